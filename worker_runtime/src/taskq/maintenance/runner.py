"""Runs maintenance services, each when the database grants this process its turn.

Every process that runs a MaintenanceRunner asks, for each service, `taskq.ask_turn(service,
period)`; exactly one caller per period wins and runs the service, so however many processes
run one, each service runs about once per period per database, and as long as one of them
lives. Nothing is held between turns: a process that dies simply stops asking. The winner asks
again when its turn frees, and so usually keeps it; a loser learns when the turn frees and how
many processes ask, and asks again at a random moment of a window after that which grows with
them (`ask_window`): a thousand workers then ask a one-second duty a few dozen times a second,
not two thousand, and the turn is taken about as promptly, by whichever asks first.

The services run one after the other, never at once: maintenance holds at most one of the
process's connections.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from taskq.backoff import Outage
from taskq.maintenance.dispatcher import Dispatcher
from taskq.maintenance.ports import MaintenanceDatabase, MaintenanceMetrics
from taskq.maintenance.pruner import Pruner
from taskq.maintenance.rescuer import Rescuer
from taskq.maintenance.scheduler import Scheduler
from taskq.store.dberrors import describe_error, is_database_error

log = logging.getLogger("taskq.maintenance")

# The next ask comes up to this share of the period after the turn frees (at most MAX_SPREAD
# seconds), so that many processes reach the duty's row one after the other.
SPREAD = 0.1
MAX_SPREAD = 0.5  # seconds
# Losers together ask about this many times a period (their asks spread over a window that
# grows with their number), the window at most LONGEST_WINDOW periods: the turn is taken at
# most about period / ASKS_PER_PERIOD late while the winner lives, and if it goes, at most
# about LONGEST_WINDOW periods / the askers left (one window, then the new winner keeps it).
ASKS_PER_PERIOD = 10
LONGEST_WINDOW = 30  # periods


def ask_window(period: float, askers: int | None) -> float:
    """Seconds over which a loser spreads its next ask, after the turn frees."""
    spread = min(SPREAD * period, MAX_SPREAD)
    if not askers:
        return spread
    return max(spread, min(period * askers / ASKS_PER_PERIOD, period * LONGEST_WINDOW))


class Service(Protocol):
    @property
    def name(self) -> str:
        """Its duty in taskq.duties; also its name in logs and metrics."""
        ...

    @property
    def period(self) -> float:
        """Seconds between two runs, across the database."""
        ...

    async def run_once(self, db: MaintenanceDatabase, metrics: MaintenanceMetrics) -> int:
        """Do the duty once; returns how many things it did (tasks rescued, deleted...)."""
        ...


def default_services(period: float) -> list[Service]:
    """What every database needs: expired leases rescued, finished tasks pruned, schedules
    fired and webhooks dispatched (every second, whatever `period`: see scheduler.py,
    dispatcher.py)."""
    return [Rescuer(period), Pruner(period), Scheduler(), Dispatcher()]


class MaintenanceRunner:
    def __init__(
        self,
        db: MaintenanceDatabase,
        services: Sequence[Service],
        metrics: MaintenanceMetrics,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if len({s.name for s in services}) != len(services):
            raise ValueError("two maintenance services share a name")
        self.db = db
        self.services = list(services)
        self.metrics = metrics
        self._rng = rng
        self._outages = {
            s.name: Outage(f"maintenance ({s.name})", log, is_database_error, describe_error)
            for s in self.services
        }

    async def run(self) -> None:
        """Forever: ask each service's turn when it is next free; run it when granted. A
        failure (of the database or of the service) is retried with backoff."""
        if not self.services:  # a process whose maintenance another loop does
            await asyncio.Event().wait()
        next_ask = {s.name: 0.0 for s in self.services}  # monotonic; 0: at once
        while True:
            service = min(self.services, key=lambda s: next_ask[s.name])
            delay = next_ask[service.name] - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            next_ask[service.name] = time.monotonic() + await self.turn(service)

    async def turn(self, service: Service) -> float:
        """Ask the service's turn and run it if granted; returns the seconds until its turn
        should be asked again."""
        outage = self._outages[service.name]
        asked = time.monotonic()
        window = ask_window(service.period, None)  # the winner's, and a new duty's
        try:
            turn = await self.db.ask_turn(service.name, service.period)
            if turn.taken:
                self.metrics.turn_taken(service.name)
                await service.run_once(self.db, self.metrics)
                wait = service.period - (time.monotonic() - asked)
            elif turn.free_in is None:  # a service new to this database: add its duty
                await self.db.add_duty(service.name)
                wait = 0.0
            else:
                wait = turn.free_in
                window = ask_window(service.period, turn.askers)
        except Exception as error:
            self.metrics.maintenance_failed(service.name)
            return min(service.period, outage.failed(error))
        outage.succeeded()
        return max(0.0, wait) + self._rng() * window
