"""Application services: what the API, CLI and poller call. Validation of domain limits lives here."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from hexq.core import idempotency, search, waiting
from hexq.core.backpressure import BackPressure, Pressure
from hexq.core.errors import (
    BackendUnavailable,
    IdempotencyMismatch,
    Overloaded,
    QueueError,
    QueueFull,
    TaskNotFound,
    UnknownTaskType,
    ValidationError,
)
from hexq.core.events import NO_EVENTS, Events
from hexq.core.model import JSON, Page, Priority, Stats, Task, TaskQuery, TaskStatus, new_task_id
from hexq.core.ports import Broker, Clock, TaskIds, TaskStore
from hexq.core.registry import Registry, check_name


@dataclass(frozen=True, slots=True)
class Limits:
    max_attempts: int = 100
    max_timeout: float = 86_400.0
    max_delay: float = 366 * 86_400.0
    max_bulk: int = 1000
    max_page: int = 500
    max_key_length: int = 200
    max_wait: float = 60.0  # seconds one wait for a result may block (a long poll over HTTP)
    max_queued_per_tenant: int = 0  # waiting (queued + scheduled) tasks per tenant; 0 = unlimited


@dataclass(frozen=True, slots=True)
class SubmitRequest:
    type: str
    payload: Mapping[str, JSON]
    priority: Priority = Priority.NORMAL
    queue: str | None = None
    delay: float | None = None
    run_at: float | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    idempotency_key: str | None = None
    tenant: str = "default"


@dataclass(frozen=True, slots=True)
class Submitted:
    task: Task
    created: bool  # False when an idempotency key returned an earlier task


class TaskService:
    """Submit, inspect, cancel and replay tasks.

    It takes the two ports it uses: the broker to enqueue, the store for everything else (one backend
    object is both). Raises: ValidationError / UnknownTaskType for bad requests, TaskNotFound,
    IdempotencyMismatch, InvalidTransition, QueueFull when a tenant is at limits.max_queued_per_tenant,
    Overloaded when a queue is past a back-pressure cap (`pressure`, core/backpressure.py), and
    BackendUnavailable from the backend.
    """

    def __init__(self, broker: Broker, store: TaskStore, registry: Registry, clock: Clock,
                 limits: Limits = Limits(), events: Events = NO_EVENTS, pressure: BackPressure | None = None) -> None:
        self._broker = broker
        self._ids = _task_ids(broker)
        self.pressure = pressure
        self.events = events
        self._store = store
        self._registry = registry
        self._clock = clock
        self.limits = limits

    async def submit(self, request: SubmitRequest) -> Submitted:
        try:
            return (await self._enqueue([self._build(request, self._clock.now())]))[0]
        except QueueError as exc:
            self.events.rejected(rejection(exc))
            raise

    async def submit_bulk(self, requests: Sequence[SubmitRequest]) -> list[Submitted]:
        """All or nothing on validation: one bad element (named `tasks[i]`) and nothing is enqueued."""
        try:
            if not 1 <= len(requests) <= self.limits.max_bulk:
                raise ValidationError(f"a bulk submit takes 1 to {self.limits.max_bulk} tasks", field="tasks")
            now = self._clock.now()
            return await self._enqueue([self._build_item(i, request, now) for i, request in enumerate(requests)])
        except QueueError as exc:
            self.events.rejected(rejection(exc))
            raise

    async def _enqueue(self, tasks: list[Task]) -> list[Submitted]:
        if self._ids is not None:  # one request: the backend may keep it together (ports.TaskIds)
            tasks = [task.with_id(task_id) for task, task_id in zip(tasks, self._ids.task_ids(tasks), strict=True)]
        if self.pressure is not None:  # after validation: a bad request hears 422, not "retry later"
            await self.pressure.admit(tasks)  # all or nothing, as for validation
        stored = await self._broker.enqueue(tasks, cap=self.limits.max_queued_per_tenant)
        submitted = [self._submitted(new, old) for new, old in zip(tasks, stored, strict=True)]
        created = [s.task for s in submitted if s.created]
        if created:
            self.events.submitted(created)
            if self.pressure is not None:
                self.pressure.accepted(created)
        return submitted

    async def get(self, task_id: str, tenant: str | None = None) -> Task:
        task = await self._store.get(task_id)
        # Another tenant's task is reported exactly like a missing one, so ids leak nothing.
        if task is None or (tenant is not None and task.tenant != tenant):
            raise TaskNotFound(f"no task {task_id!r}")
        return task

    async def wait(self, task_id: str, seconds: float, tenant: str | None = None) -> Task:
        """The task once it has finished (succeeded, dead or cancelled), or as it is after `seconds`
        (at most limits.max_wait). Blocks on the backend where it can (Redis), polls with backoff elsewhere."""
        _check_number(seconds, 0, self.limits.max_wait, "wait")
        task = await self.get(task_id, tenant)  # 404 (and another tenant's task) before any waiting
        if task.is_terminal or seconds == 0:
            return task
        finished = await waiting.wait_finished(self._store, task_id, float(seconds))
        if finished is None:
            raise TaskNotFound(f"no task {task_id!r}")  # purged while we waited
        return finished

    async def query(self, query: TaskQuery) -> Page:
        if not 1 <= query.limit <= self.limits.max_page:
            raise ValidationError(f"limit must be 1 to {self.limits.max_page}", field="limit")
        search.check(query)
        return await self._store.query(query)

    async def cancel(self, task_id: str, tenant: str | None = None) -> Task:
        """Cancel a waiting task at once (returned cancelled), or ask the worker running it to stop it
        (returned still running: it ends cancelled when its worker settles it, within a heartbeat).
        Raises InvalidTransition for a finished task."""
        task = await self.get(task_id, tenant)
        if task.status is TaskStatus.RUNNING:
            running = await self._store.request_cancel(task_id)
            return running if running is not None else await self.cancel(task_id, tenant)
        stored = await self._store.transition(task.moved_to(TaskStatus.CANCELLED), expected=task.status)
        if stored is None:
            return await self.cancel(task_id, tenant)  # it moved under us (e.g. promoted): decide again
        self.events.cancelled(stored)
        return stored

    async def stats(self) -> Stats:
        return await self._store.stats()

    async def pressures(self) -> list[Pressure]:
        """Every queue with a back-pressure cap, judged on this process's view (read at most a second ago)."""
        return [] if self.pressure is None else await self.pressure.pressures()

    async def replay(self, task_ids: Sequence[str], tenant: str | None = None) -> list[Task]:
        """Send dead tasks back to the queue with a fresh set of attempts.

        Ids that are unknown, another tenant's or not dead are skipped: the answer lists what moved.
        """
        replayed = []
        for task_id in dict.fromkeys(task_ids):
            task = await self._store.get(task_id)
            if task is None or task.status is not TaskStatus.DEAD or (tenant is not None and task.tenant != tenant):
                continue
            again = task.moved_to(TaskStatus.QUEUED, attempts=0, delay=0.0, finished_at=None, worker_id=None)
            stored = await self._store.transition(again, expected=TaskStatus.DEAD)
            if stored is not None:
                replayed.append(stored)
        if replayed:
            self.events.replayed(replayed)
        return replayed

    def _submitted(self, new: Task, stored: Task) -> Submitted:
        if stored.id == new.id:
            return Submitted(stored, created=True)
        if idempotency.fingerprint(stored) != idempotency.fingerprint(new):  # the adapters check first; this
            raise idempotency.mismatch(new.idempotency_key)  # is for a stored task they did not see (a race on AWS)
        return Submitted(stored, created=False)

    def _build_item(self, index: int, request: SubmitRequest, now: float) -> Task:
        try:
            return self._build(request, now)
        except ValidationError as exc:
            # Name the element, so a client can find the bad one among a thousand.
            raise type(exc)(f"tasks[{index}]: {exc}", field=f"tasks[{index}].{exc.field}") from exc

    def _build(self, request: SubmitRequest, now: float) -> Task:
        spec = self._registry.get(request.type)
        _check_payload(request.payload)
        spec.check(dict(request.payload))
        run_at, delay = self._when(request, now)
        return Task(
            id=new_task_id(),
            type=spec.name,
            payload=dict(request.payload),
            queue=check_name(request.queue, "queue") if request.queue is not None else spec.queue,
            priority=request.priority,
            # The backend decides on its own clock whether the task is due (hexq.core.clock.stamped).
            status=TaskStatus.SCHEDULED if delay > 0 or run_at > now else TaskStatus.QUEUED,
            max_attempts=self._max_attempts(request.max_attempts, spec.max_attempts),
            timeout=self._timeout(request.timeout, spec.timeout),
            run_at=run_at,
            delay=delay,
            created_at=now,
            idempotency_key=self._key(request.idempotency_key),
            tenant=request.tenant,
        )

    def _when(self, request: SubmitRequest, now: float) -> tuple[float, float]:
        """(run_at, delay): an absolute time only when the client asked for one; a delay goes to the
        backend as a duration, which it adds to its own clock (this process's may be off)."""
        if request.delay is not None and request.run_at is not None:
            raise ValidationError("give either delay or run_at, not both", field="delay")
        if request.delay is not None:
            _check_number(request.delay, 0, self.limits.max_delay, "delay")
            return 0.0, float(request.delay)
        if request.run_at is not None:
            # The bound is a sanity check of the request; only the backend's clock decides when it is due.
            _check_time(request.run_at, now, self.limits.max_delay)
            return float(request.run_at), 0.0
        return 0.0, 0.0

    def _max_attempts(self, value: int | None, default: int) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= self.limits.max_attempts:
            raise ValidationError(f"max_attempts must be an integer 1 to {self.limits.max_attempts}",
                                  field="max_attempts")
        return value

    def _timeout(self, value: float | None, default: float) -> float:
        if value is None:
            return default
        _check_number(value, 0.001, self.limits.max_timeout, "timeout")
        return float(value)

    def _key(self, key: str | None) -> str | None:
        if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= self.limits.max_key_length):
            raise ValidationError(f"idempotency_key must be a string of 1 to {self.limits.max_key_length} characters",
                                  field="idempotency_key")
        return key


_REJECTIONS: tuple[tuple[type[QueueError], str], ...] = (
    (UnknownTaskType, "unknown_type"), (QueueFull, "queue_full"), (Overloaded, "overloaded"),
    (IdempotencyMismatch, "idempotency_mismatch"),
    (BackendUnavailable, "backend_unavailable"), (ValidationError, "validation"))


def rejection(exc: QueueError) -> str:
    """The reason label of a refused submit (hexq_submit_rejections_total): a small, fixed set."""
    for kind, reason in _REJECTIONS:
        if isinstance(exc, kind):
            return reason
    return "other"


_SCALARS = (str, int, bool, type(None))


def _plainly_json(value: object, depth: int) -> bool:
    """True for the common payload that json.dumps(allow_nan=False) surely accepts — string keys; strings,
    integers, booleans, None and finite floats; shallow lists and objects of those — found without
    serialising it (a submit paid more for json.dumps than for the rest of its checks). False means
    "not sure": the caller serialises it to find out. Subclasses (an IntEnum, a str subclass) are left
    to json.dumps, as are integers too large for a double (10**400), which it writes but cannot be read
    back exactly by every client."""
    if type(value) in _SCALARS:
        return type(value) is not int or -(2**53) <= value <= 2**53
    if type(value) is float:
        return math.isfinite(value)
    if depth == 0:
        return False
    if type(value) is dict:
        return all(type(k) is str and _plainly_json(v, depth - 1) for k, v in value.items())
    if type(value) is list:
        return all(_plainly_json(v, depth - 1) for v in value)
    return False


def _check_number(value: object, low: float, high: float, name: str) -> None:
    # Compare before isfinite: math.isfinite(10**400) raises OverflowError on a huge int.
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not low <= value <= high or not math.isfinite(value):  # type: ignore[operator, arg-type]
        raise ValidationError(f"{name} must be a number from {low:g} to {high:g}", field=name)


def _check_time(value: object, now: float, ahead: float) -> None:
    """run_at is a time: a refusal names the limit as a date, not as a count of seconds."""
    try:
        _check_number(value, 0, now + ahead, "run_at")
    except ValidationError:
        limit = datetime.fromtimestamp(now + ahead, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        raise ValidationError(f"run_at must be a time from 1970-01-01T00:00:00Z to {limit} ({ahead / 86_400:g} days "
                              "from now), as epoch seconds or ISO-8601", field="run_at") from None


def _check_payload(payload: object) -> None:
    if not isinstance(payload, Mapping):
        raise ValidationError("payload must be a JSON object", field="payload")
    if _plainly_json(payload, 4):
        return
    try:
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"payload is not plain JSON: {exc}", field="payload") from exc



def _task_ids(broker: Broker) -> TaskIds | None:
    """The broker, if it chooses its tasks' ids (ports.TaskIds). Unlike SettleAndClaim this may come through a
    wrapper that forwards by __getattr__ (hexq serve's NotifyingBackend): choosing ids is pure computation, so
    nothing a wrapper intercepts is gone around, and a sharded Redis behind one still spreads its tasks."""
    return broker if isinstance(broker, TaskIds) else None
