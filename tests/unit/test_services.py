from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hexq.adapters.memory import MemoryBackend
from hexq.core import outcome
from hexq.core.clock import FakeClock
from hexq.core.errors import IdempotencyMismatch, InvalidTransition, TaskNotFound, UnknownTaskType, ValidationError
from hexq.core.model import Priority, Settlement, Task, TaskQuery, TaskStatus
from hexq.core.registry import Registry
from hexq.core.services import Limits, SubmitRequest, TaskService


@pytest.fixture
def service(registry: Registry, clock: FakeClock) -> TaskService:
    backend = MemoryBackend(clock)
    return TaskService(backend, backend, registry, clock, Limits(max_bulk=5))


async def test_submit_fills_defaults_from_the_task_type(service: TaskService, clock: FakeClock) -> None:
    submitted = await service.submit(SubmitRequest("boom", {"a": 1}))
    task = submitted.task
    assert submitted.created
    assert (task.status, task.max_attempts, task.priority, task.queue) == (TaskStatus.QUEUED, 3, Priority.NORMAL,
                                                                           "default")
    assert task.created_at == clock.now() == task.run_at


async def test_delay_makes_a_scheduled_task(service: TaskService, clock: FakeClock) -> None:
    task = (await service.submit(SubmitRequest("echo", {}, delay=30))).task
    assert task.status is TaskStatus.SCHEDULED
    assert task.run_at == clock.now() + 30


async def test_run_at_in_the_past_runs_now(service: TaskService, clock: FakeClock) -> None:
    task = (await service.submit(SubmitRequest("echo", {}, run_at=clock.now() - 100))).task
    assert task.status is TaskStatus.QUEUED


@pytest.mark.parametrize(("request_", "field"), [
    (SubmitRequest("echo", {}, delay=-1), "delay"),
    (SubmitRequest("echo", {}, delay=float("nan")), "delay"),
    (SubmitRequest("echo", {}, delay=1, run_at=5), "delay"),
    (SubmitRequest("echo", {}, run_at=1e12), "run_at"),
    (SubmitRequest("echo", {}, max_attempts=0), "max_attempts"),
    (SubmitRequest("echo", {}, max_attempts=10**9), "max_attempts"),
    (SubmitRequest("echo", {}, timeout=0), "timeout"),
    (SubmitRequest("echo", {}, queue="bad queue!"), "queue"),
    (SubmitRequest("echo", "not an object"), "payload"),  # type: ignore[arg-type]
    (SubmitRequest("echo", {"x": float("inf")}), "payload"),
    (SubmitRequest("echo", {}, idempotency_key=""), "idempotency_key"),
])
async def test_bad_requests_name_the_field(service: TaskService, request_: SubmitRequest, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        await service.submit(request_)
    assert info.value.field == field
    assert (await service.stats()).by_status[TaskStatus.QUEUED] == 0


async def test_unknown_type_is_refused(service: TaskService) -> None:
    with pytest.raises(UnknownTaskType):
        await service.submit(SubmitRequest("does.not.exist", {}))


async def test_bulk_is_all_or_nothing_on_validation(service: TaskService) -> None:
    with pytest.raises(ValidationError):
        await service.submit_bulk([SubmitRequest("echo", {}), SubmitRequest("echo", {}, delay=-5)])
    assert (await service.stats()).backlog == 0
    with pytest.raises(ValidationError):
        await service.submit_bulk([SubmitRequest("echo", {})] * 6)
    done = await service.submit_bulk([SubmitRequest("echo", {"i": i}) for i in range(5)])
    assert [s.task.payload["i"] for s in done] == list(range(5))


async def test_idempotency_key_returns_the_original(service: TaskService) -> None:
    first = await service.submit(SubmitRequest("echo", {"a": 1}, idempotency_key="k"))
    again = await service.submit(SubmitRequest("echo", {"a": 1}, idempotency_key="k"))
    assert (again.task.id, again.created) == (first.task.id, False)
    other_tenant = await service.submit(SubmitRequest("echo", {"a": 1}, idempotency_key="k", tenant="b"))
    assert other_tenant.created and other_tenant.task.id != first.task.id
    with pytest.raises(IdempotencyMismatch):
        await service.submit(SubmitRequest("echo", {"a": 2}, idempotency_key="k"))


async def test_get_hides_other_tenants(service: TaskService) -> None:
    task = (await service.submit(SubmitRequest("echo", {}, tenant="a"))).task
    assert (await service.get(task.id, "a")).id == task.id
    with pytest.raises(TaskNotFound):
        await service.get(task.id, "b")
    with pytest.raises(TaskNotFound):
        await service.get("missing")


async def test_cancel_queued_and_scheduled_but_not_finished(service: TaskService) -> None:
    queued = (await service.submit(SubmitRequest("echo", {}))).task
    later = (await service.submit(SubmitRequest("echo", {}, delay=60))).task
    assert (await service.cancel(queued.id)).status is TaskStatus.CANCELLED
    assert (await service.cancel(later.id)).status is TaskStatus.CANCELLED
    with pytest.raises(InvalidTransition):
        await service.cancel(queued.id)


async def test_query_limit_is_bounded(service: TaskService) -> None:
    with pytest.raises(ValidationError):
        await service.query(TaskQuery(limit=0))
    with pytest.raises(ValidationError):
        await service.query(TaskQuery(limit=10_000))


async def test_replay_moves_only_dead_tasks(service: TaskService, clock: FakeClock) -> None:
    backend = service._broker  # a MemoryBackend: the broker and the store are one object
    dead = (await service.submit(SubmitRequest("echo", {}, max_attempts=1))).task
    alive = (await service.submit(SubmitRequest("echo", {}, delay=60))).task
    [lease] = await backend.claim(["default"], 1, lease_seconds=30, worker_id="w")
    await backend.settle([Settlement(lease, lease.task.moved_to(TaskStatus.FAILED).moved_to(TaskStatus.DEAD))])
    replayed = await service.replay([dead.id, dead.id, alive.id, "missing"])
    assert [(t.id, t.status, t.attempts) for t in replayed] == [(dead.id, TaskStatus.QUEUED, 0)]
    assert (await service.get(alive.id)).status is TaskStatus.SCHEDULED


@pytest.mark.parametrize("field", ["delay", "timeout", "run_at"])
async def test_a_huge_integer_is_a_validation_error_not_an_overflow(service: TaskService, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        await service.submit(SubmitRequest("echo", {}, **{field: 10**400}))  # type: ignore[arg-type]
    assert info.value.field == field


async def test_odd_type_names_are_unknown_types(service: TaskService) -> None:
    with pytest.raises(UnknownTaskType):
        await service.submit(SubmitRequest(["echo"], {}))  # type: ignore[arg-type]


async def test_a_key_reused_with_another_priority_is_a_mismatch(service: TaskService) -> None:
    await service.submit(SubmitRequest("echo", {}, idempotency_key="k"))
    with pytest.raises(IdempotencyMismatch):
        await service.submit(SubmitRequest("echo", {}, idempotency_key="k", priority=Priority.HIGH))


async def test_a_validator_refuses_a_bad_payload_at_submit(registry: Registry, clock: FakeClock) -> None:
    def positive(payload: dict[str, object]) -> None:
        if not isinstance(payload.get("n"), int) or payload["n"] <= 0:  # type: ignore[operator]
            raise ValueError("n must be a positive integer")

    registry.task("count", validate=positive)(lambda payload: payload)
    backend = MemoryBackend(clock)
    service = TaskService(backend, backend, registry, clock)
    with pytest.raises(ValidationError) as info:
        await service.submit(SubmitRequest("count", {"n": -1}))
    assert (info.value.field, str(info.value)) == ("payload", "count: n must be a positive integer")
    assert (await service.submit(SubmitRequest("count", {"n": 2}))).created


# -- waiting for a result ---------------------------------------------------------------------------
async def test_wait_returns_the_task_once_it_finishes(registry: Registry, clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    service = TaskService(backend, backend, registry, clock)
    task = (await service.submit(SubmitRequest("echo", {"n": 1}))).task

    async def finish_soon() -> None:
        await asyncio.sleep(0.05)
        [lease] = await backend.claim(["default"], 1, lease_seconds=30, worker_id="w")
        await backend.settle([Settlement(lease, outcome.succeeded(lease.task, {"n": 1}))])

    finisher = asyncio.create_task(finish_soon())
    done = await service.wait(task.id, 5)
    await finisher

    assert (done.status, done.result) == (TaskStatus.SUCCEEDED, {"n": 1})


async def test_wait_gives_the_task_as_it_is_when_the_time_is_up(service: TaskService) -> None:
    task = (await service.submit(SubmitRequest("echo", {}))).task

    assert (await service.wait(task.id, 0.02)).status is TaskStatus.QUEUED
    assert (await service.wait(task.id, 0)).status is TaskStatus.QUEUED


@pytest.mark.parametrize("seconds", [-1, 61, float("inf"), 10**400, True])
async def test_wait_is_bounded(service: TaskService, seconds: float) -> None:
    task = (await service.submit(SubmitRequest("echo", {}))).task
    with pytest.raises(ValidationError) as refused:
        await service.wait(task.id, seconds)
    assert refused.value.field == "wait"


async def test_waiting_on_an_unknown_or_foreign_task_is_not_found(service: TaskService) -> None:
    task = (await service.submit(SubmitRequest("echo", {}, tenant="acme"))).task
    for task_id, tenant in (("nope", None), (task.id, "globex")):
        with pytest.raises(TaskNotFound):
            await service.wait(task_id, 1, tenant)


# -- the payload check's fast path ---------------------------------------------------------------------
_json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3) | st.integers(), children,
                                                                       max_size=3),
    max_leaves=12)


@given(_json_like)
def test_a_payload_the_fast_path_passes_is_one_json_dumps_accepts(value: object) -> None:
    from hexq.core.services import _plainly_json

    if _plainly_json(value, 4):
        json.dumps(value, allow_nan=False)  # must not raise


@pytest.mark.parametrize("payload", [{"x": float("nan")}, {"x": [float("inf")]}, {"x": {"y": object()}}])
async def test_what_the_fast_path_leaves_is_still_refused(payload: dict[str, object], registry: Registry,
                                                          clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    with pytest.raises(ValidationError, match="payload"):
        await TaskService(backend, backend, registry, clock).submit(SubmitRequest("echo", payload))


class _ShardedIds(MemoryBackend):
    """A backend that chooses its tasks' ids (ports.TaskIds), as Redis spread over a cluster will: the queue in
    the id. Records each call, to check one call per request."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.calls: list[int] = []

    def task_ids(self, tasks: Sequence[Task]) -> list[str]:
        self.calls.append(len(tasks))
        return [f"{task.id}.{task.queue}" for task in tasks]


async def test_a_backend_that_chooses_ids_gets_one_call_per_request(registry: Registry, clock: FakeClock) -> None:
    backend = _ShardedIds(clock)
    service = TaskService(backend, backend, registry, clock)
    one = (await service.submit(SubmitRequest("echo", {}, queue="emails"))).task
    bulk = await service.submit_bulk([SubmitRequest("echo", {"i": i}) for i in range(3)])
    assert backend.calls == [1, 3]
    assert one.id.endswith(".emails") and all(s.task.id.endswith(".default") for s in bulk)
    assert (await service.get(one.id)).id == one.id


async def test_a_chosen_id_still_answers_a_repeated_idempotency_key(registry: Registry, clock: FakeClock) -> None:
    backend = _ShardedIds(clock)
    service = TaskService(backend, backend, registry, clock)
    first = await service.submit(SubmitRequest("echo", {}, idempotency_key="k"))
    again = await service.submit(SubmitRequest("echo", {}, idempotency_key="k"))
    assert (first.created, again.created, again.task.id) == (True, False, first.task.id)


async def test_a_forwarding_wrapper_passes_the_choice_of_ids_through(registry: Registry, clock: FakeClock) -> None:
    class Forwarding:  # forwards everything by __getattr__, as hexq serve's NotifyingBackend does
        def __init__(self, inner: _ShardedIds) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> object:
            return getattr(self._inner, name)

    backend = _ShardedIds(clock)
    service = TaskService(Forwarding(backend), backend, registry, clock)  # type: ignore[arg-type]
    task = (await service.submit(SubmitRequest("echo", {}))).task
    assert backend.calls == [1] and task.id.endswith(".default")
