"""The taskq.v1 methods: each authenticates the call's key, calls one service operation (the
same one its REST route calls) and shapes the answer. Authorization lives in the service;
errors become status codes in observe.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any

import grpc

from taskq.auth import ApiKey
from taskq.errors import InvalidArgumentError
from taskq_api.grpc import messages
from taskq_api.grpc.observe import current_call
from taskq_api.grpc.v1 import taskq_pb2 as pb
from taskq_api.grpc.v1 import taskq_pb2_grpc as pb_grpc
from taskq_api.service import DEFAULT_LIST_LIMIT, ApiService

Context = grpc.aio.ServicerContext[Any, Any]


class TaskqServicer(pb_grpc.TaskqServiceServicer):
    def __init__(self, service: ApiService) -> None:
        self._service = service

    async def Enqueue(self, request: pb.EnqueueRequest, context: Context) -> pb.EnqueueResponse:
        key = await self._key(context)
        task = messages.submission(request.task, _now(), "task")
        try:
            enqueued = await self._service.enqueue(
                key, request.namespace, request.name, task, _traceparent(context)
            )
        except InvalidArgumentError as error:
            raise messages.submission_error(error, [request.task], single=True) from None
        return pb.EnqueueResponse(task=messages.task(enqueued.task), created=enqueued.created)

    async def EnqueueBatch(
        self, request: pb.EnqueueBatchRequest, context: Context
    ) -> pb.EnqueueBatchResponse:
        key = await self._key(context)
        now = _now()
        tasks = [messages.submission(t, now, f"tasks[{i}]") for i, t in enumerate(request.tasks)]
        try:
            results = await self._service.enqueue_batch(
                key, request.namespace, request.name, tasks, _traceparent(context)
            )
        except InvalidArgumentError as error:
            raise messages.submission_error(error, request.tasks, single=False) from None
        return pb.EnqueueBatchResponse(
            tasks=[pb.EnqueuedTask(id=r.id, created=r.created) for r in results],
            created=sum(r.created for r in results),
        )

    async def GetTask(self, request: pb.GetTaskRequest, context: Context) -> pb.Task:
        key = await self._key(context)
        details = await self._service.task(key, request.task_id, wait=request.wait_seconds)
        return messages.task(details)

    async def ListTasks(
        self, request: pb.ListTasksRequest, context: Context
    ) -> pb.ListTasksResponse:
        key = await self._key(context)
        page = await self._service.list_tasks(
            key,
            request.queue or None,
            state=messages.enum_value(pb.TaskState.DESCRIPTOR, request.state, "state"),
            task_name=request.task_name if request.HasField("task_name") else None,
            correlation_id=request.correlation_id if request.HasField("correlation_id") else None,
            created_after=messages.optional_timestamp(request, "created_after"),
            created_before=messages.optional_timestamp(request, "created_before"),
            error_contains=(
                request.error_contains if request.HasField("error_contains") else None
            ),
            limit=request.limit or DEFAULT_LIST_LIMIT,
            cursor=request.cursor or None,
        )
        return messages.task_page(page)

    async def CancelTask(self, request: pb.CancelTaskRequest, context: Context) -> pb.Task:
        key = await self._key(context)
        return messages.task(await self._service.cancel(key, request.task_id))

    async def RetryTask(self, request: pb.RetryTaskRequest, context: Context) -> pb.Task:
        key = await self._key(context)
        return messages.task(await self._service.retry(key, request.task_id))

    async def ListQueues(
        self, request: pb.ListQueuesRequest, context: Context
    ) -> pb.ListQueuesResponse:
        key = await self._key(context)
        return pb.ListQueuesResponse(
            queues=[messages.queue(info) for info in await self._service.queues(key)]
        )

    async def GetQueue(self, request: pb.GetQueueRequest, context: Context) -> pb.QueueDetails:
        key = await self._key(context)
        details = await self._service.queue(key, request.namespace, request.name)
        return messages.queue_details(details)

    async def PauseQueue(
        self, request: pb.PauseQueueRequest, context: Context
    ) -> pb.QueueDetails:
        key = await self._key(context)
        details = await self._service.set_paused(key, request.namespace, request.name, paused=True)
        return messages.queue_details(details)

    async def ResumeQueue(
        self, request: pb.ResumeQueueRequest, context: Context
    ) -> pb.QueueDetails:
        key = await self._key(context)
        details = await self._service.set_paused(
            key, request.namespace, request.name, paused=False
        )
        return messages.queue_details(details)

    async def ReplayDead(
        self, request: pb.ReplayDeadRequest, context: Context
    ) -> pb.ReplayDeadResponse:
        key = await self._key(context)
        result = await self._service.replay_dead(
            key, request.namespace, request.name, list(request.ids), every=request.all
        )
        return messages.replayed(result)

    async def WatchTask(
        self, request: pb.WatchTaskRequest, context: Context
    ) -> AsyncIterator[pb.Task]:
        key = await self._key(context)
        async with aclosing(self._service.watch(key, request.task_id)) as changes:
            async for details in changes:
                yield messages.task(details)

    async def ListSchedules(
        self, request: pb.ListSchedulesRequest, context: Context
    ) -> pb.ListSchedulesResponse:
        key = await self._key(context)
        found = await self._service.schedules(key, request.namespace or None)
        return pb.ListSchedulesResponse(schedules=[messages.schedule(s) for s in found])

    async def GetSchedule(self, request: pb.GetScheduleRequest, context: Context) -> pb.Schedule:
        key = await self._key(context)
        return messages.schedule(
            await self._service.schedule(key, request.namespace, request.name)
        )

    async def PutSchedule(
        self, request: pb.PutScheduleRequest, context: Context
    ) -> pb.PutScheduleResponse:
        key = await self._key(context)
        try:
            fields = messages.schedule_fields(request.spec)
            put = await self._service.put_schedule(key, request.namespace, request.name, fields)
        except InvalidArgumentError as error:
            raise messages.schedule_error(error) from None
        return pb.PutScheduleResponse(
            schedule=messages.schedule(put.schedule), created=put.created
        )

    async def DeleteSchedule(
        self, request: pb.DeleteScheduleRequest, context: Context
    ) -> pb.DeleteScheduleResponse:
        key = await self._key(context)
        await self._service.delete_schedule(key, request.namespace, request.name)
        return pb.DeleteScheduleResponse()

    async def SuspendSchedule(
        self, request: pb.SuspendScheduleRequest, context: Context
    ) -> pb.Schedule:
        key = await self._key(context)
        return messages.schedule(await self._service.set_schedule_suspended(
            key, request.namespace, request.name, suspend=True
        ))

    async def ResumeSchedule(
        self, request: pb.ResumeScheduleRequest, context: Context
    ) -> pb.Schedule:
        key = await self._key(context)
        return messages.schedule(await self._service.set_schedule_suspended(
            key, request.namespace, request.name, suspend=False
        ))

    async def _key(self, context: Context) -> ApiKey:
        key = await self._service.authenticate(_bearer(context))
        current_call().key_prefix = key.prefix
        return key


def _bearer(context: Context) -> str | None:
    """The key of `authorization: Bearer <key>` metadata; None without one (any other scheme
    is no key, as for REST)."""
    for name, value in context.invocation_metadata() or ():
        if name == "authorization" and isinstance(value, str):
            scheme, _, credentials = value.partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
    return None


def _traceparent(context: Context) -> str | None:
    """The caller's W3C trace context, from `traceparent` metadata (as gRPC's OpenTelemetry
    instrumentations propagate it)."""
    for name, value in context.invocation_metadata() or ():
        if name == "traceparent" and isinstance(value, str):
            return value
    return None


def _now() -> datetime:
    return datetime.now(UTC)
