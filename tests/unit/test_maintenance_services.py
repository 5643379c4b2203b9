"""The maintenance services over an in-memory fake of their database port: a queue whose call
fails does not keep the other queues from their turn."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from taskq.maintenance.dispatcher import Dispatcher
from taskq.maintenance.pruner import Pruner
from taskq.maintenance.rescuer import Rescuer
from taskq.maintenance.runner import ASKS_PER_PERIOD, LONGEST_WINDOW, ask_window
from taskq.store.maintenance import MaintainedQueue, Turn
from taskq.store.schedules import Fired


class FakeDatabase:
    """Queue 1 times out (a large backlog past the deadline); the others have work."""

    def __init__(self) -> None:
        self.queues = [
            MaintainedQueue(1, "a/slow"),
            MaintainedQueue(2, "b/q"),
            MaintainedQueue(3, "c/q"),
        ]
        self.notified: list[int] = []

    async def ask_turn(self, duty: str, every_s: float) -> Turn:
        return Turn(taken=True, free_in=every_s, askers=1)

    async def add_duty(self, duty: str) -> None:
        pass

    async def maintained_queues(self) -> list[MaintainedQueue]:
        return self.queues

    async def _work(self, queue_id: int) -> int:
        if queue_id == 1:
            raise TimeoutError
        return queue_id * 10

    async def rescue_expired(self, queue_id: int, limit: int) -> int:
        return await self._work(queue_id)

    async def purge_finished(self, queue_id: int, limit: int) -> int:
        return await self._work(queue_id)

    async def wake_queue(self, queue_id: int) -> None:
        self.notified.append(queue_id)

    async def database_now(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC)

    async def fire_schedules(self, now: datetime, limit: int) -> list[Fired]:
        return []

    async def webhook_queues(self) -> list[MaintainedQueue]:
        return self.queues[1:]  # the queues with webhooks

    async def dispatch_webhooks(self, queue_id: int, overlap_s: float, limit: int) -> int:
        return await self._work(queue_id)


class Counts:
    def __init__(self) -> None:
        self.rescued_total = 0
        self.purged_total = 0
        self.dispatched_total = 0

    def turn_taken(self, service: str) -> None:
        pass

    def maintenance_failed(self, service: str) -> None:
        pass

    def rescued(self, cause: str, count: int) -> None:
        assert cause == "lease_expired"
        self.rescued_total += count

    def purged(self, count: int) -> None:
        self.purged_total += count

    def schedule_ticks(self, outcome: str, count: int) -> None:
        pass

    def webhooks_dispatched(self, count: int) -> None:
        self.dispatched_total += count


async def test_the_rescuer_serves_every_queue_then_reports_the_failure() -> None:
    db, counts = FakeDatabase(), Counts()
    with pytest.raises(TimeoutError):
        await Rescuer(period=1.0).run_once(db, counts)
    assert counts.rescued_total == 20 + 30
    assert db.notified == [2, 3]


async def test_the_pruner_serves_every_queue_then_reports_the_failure() -> None:
    db, counts = FakeDatabase(), Counts()
    with pytest.raises(TimeoutError):
        await Pruner(period=1.0).run_once(db, counts)
    assert counts.purged_total == 20 + 30


async def test_without_failures_the_run_returns_its_total() -> None:
    db, counts = FakeDatabase(), Counts()
    db.queues = db.queues[1:]
    assert await Rescuer(period=1.0).run_once(db, counts) == 50


async def test_the_dispatcher_serves_only_the_queues_with_webhooks() -> None:
    db, counts = FakeDatabase(), Counts()
    assert await Dispatcher().run_once(db, counts) == 50
    assert counts.dispatched_total == 50


def test_losers_spread_their_asks_over_a_window_that_grows_with_them() -> None:
    # alone or uncounted: the small spread of old
    assert ask_window(1.0, None) == pytest.approx(0.1)
    assert ask_window(1.0, 0) == pytest.approx(0.1)
    assert ask_window(60.0, 1) == pytest.approx(60.0 / ASKS_PER_PERIOD)
    # many: together about ASKS_PER_PERIOD asks a period, the window at most LONGEST_WINDOW
    assert ask_window(1.0, 100) == pytest.approx(100 / ASKS_PER_PERIOD)
    assert ask_window(1.0, 100_000) == pytest.approx(LONGEST_WINDOW)
    assert ask_window(5.0, 20) == pytest.approx(5.0 * 20 / ASKS_PER_PERIOD)
