"""The worker with circuit breakers and Retry(after=...): tasks given back unrun keep their attempts."""

from __future__ import annotations

import pytest

from hexq.adapters.memory import MemoryBackend
from hexq.core.breaker import Breaker, Circuit
from hexq.core.clock import FakeClock
from hexq.core.events import NoEvents
from hexq.core.model import AttemptOutcome, Task, TaskStatus
from hexq.core.registry import Registry
from hexq.core.retry import Retry
from hexq.core.services import SubmitRequest, TaskService
from hexq.core.worker import Invocation, Report, WorkerConfig


class Seen(NoEvents):
    """Events: the deferrals and circuit changes (everything else ignored)."""

    def __init__(self) -> None:
        self.deferrals: list[tuple[str, str, float]] = []
        self.circuits: list[tuple[str, str, str]] = []

    def deferred(self, task: Task, after: Task, reason: str) -> None:
        self.deferrals.append((task.id, reason, after.delay))

    def circuit_changed(self, name: str, before: str, after: str) -> None:
        self.circuits.append((name, before, after))


@pytest.fixture
def backend(clock: FakeClock) -> MemoryBackend:
    return MemoryBackend(clock)


@pytest.fixture
def service(backend: MemoryBackend, registry: Registry, clock: FakeClock) -> TaskService:
    return TaskService(backend, backend, registry, clock)


async def run(backend: MemoryBackend, registry: Registry, clock: FakeClock, events: Seen | None = None) -> Report:
    config = WorkerConfig(worker_id="w1", idle_wait=0.01, budget=10.0, grace=0.2, concurrency=1)
    extra = {"events": events} if events is not None else {}
    return await Invocation(backend, registry, config, rand=lambda: 0.0, clock=clock, breakers=backend,
                            **extra).run()


async def submit_many(service: TaskService, type_: str, n: int) -> list[str]:
    return [(await service.submit(SubmitRequest(type_, {"i": i}))).task.id for i in range(n)]


async def test_failures_open_the_breaker_and_later_tasks_are_held_with_their_attempts_unused(
        backend: MemoryBackend, registry: Registry, clock: FakeClock, service: TaskService) -> None:
    down = {"now": True}
    calls: list[int] = []

    @registry.task("charge", max_attempts=1, breaker=Breaker(failures=2, reset=30.0))
    async def charge(payload: dict[str, int]) -> int:
        calls.append(payload["i"])
        if down["now"]:
            raise ConnectionError("payments down")
        return payload["i"]

    ids = await submit_many(service, "charge", 6)
    seen = Seen()
    report = await run(backend, registry, clock, seen)
    assert calls == [0, 1]  # two failures opened it; nothing else ran
    assert (report.dead, report.deferred) == (2, 4)
    held = [await service.get(i) for i in ids[2:]]
    assert all(t.status is TaskStatus.SCHEDULED and t.attempts == 0 and t.history == () for t in held)
    assert all(t.run_at == clock.now() + 30.0 for t in held)  # when a probe may go
    _, states = await backend.breaker_states()
    assert [(s.name, s.circuit) for s in states] == [("charge", Circuit.OPEN)]
    assert seen.circuits == [("charge", "closed", "open")]
    assert {reason for _, reason, _ in seen.deferrals} == {"breaker"}

    down["now"] = False
    clock.advance(30.0)
    report = await run(backend, registry, clock, seen)
    assert report.succeeded == 4 and calls[2:] == [2, 3, 4, 5]
    assert [(await service.get(i)).attempts for i in ids[2:]] == [1, 1, 1, 1]  # each ran once, as its first attempt
    assert seen.circuits[1:] == [("charge", "open", "half_open"), ("charge", "half_open", "closed")]


async def test_a_failed_probe_opens_it_again(backend: MemoryBackend, registry: Registry, clock: FakeClock,
                                            service: TaskService) -> None:
    @registry.task("down", max_attempts=5, breaker=Breaker(failures=1, reset=10.0))
    async def down(payload: dict[str, int]) -> None:
        raise ConnectionError("still down")

    ids = await submit_many(service, "down", 3)
    await run(backend, registry, clock)
    clock.advance(10.0)
    await run(backend, registry, clock)
    _, [state] = await backend.breaker_states()
    assert state.circuit is Circuit.OPEN and state.opened_at == clock.now()
    attempts = sorted([(await service.get(i)).attempts for i in ids])
    assert attempts == [0, 0, 2]  # the first failure, then its retry was the probe; the others never ran


async def test_retry_after_reschedules_without_using_an_attempt(
        backend: MemoryBackend, registry: Registry, clock: FakeClock, service: TaskService) -> None:
    calls: list[int] = []

    @registry.task("poll", max_attempts=1)
    async def poll(payload: dict[str, int]) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise Retry(after=5.0, reason="429 from upstream")
        return "ok"

    [task_id] = await submit_many(service, "poll", 1)
    seen = Seen()
    report = await run(backend, registry, clock, seen)
    task = await service.get(task_id)
    assert (report.deferred, report.retried, report.dead) == (1, 0, 0)
    assert (task.status, task.attempts, task.run_at) == (TaskStatus.SCHEDULED, 0, clock.now() + 5.0)
    [entry] = task.history
    assert (entry.outcome, entry.delay, entry.number) == (AttemptOutcome.DEFERRED, 5.0, 1)
    assert "429 from upstream" in (entry.error or "")
    assert seen.deferrals == [(task_id, "retry", 5.0)]
    clock.advance(5.0)
    await run(backend, registry, clock)
    done = await service.get(task_id)
    assert (done.status, done.attempts, done.result) == (TaskStatus.SUCCEEDED, 1, "ok")  # max_attempts 1 sufficed


async def test_retry_is_bounded_by_max_deferrals_then_counts_as_a_failure(
        backend: MemoryBackend, registry: Registry, clock: FakeClock, service: TaskService) -> None:
    calls: list[int] = []

    @registry.task("greedy", max_attempts=1, max_deferrals=2)
    async def greedy(payload: dict[str, int]) -> None:
        calls.append(1)
        raise Retry(after=1.0)

    [task_id] = await submit_many(service, "greedy", 1)
    for _ in range(4):
        await run(backend, registry, clock)
        clock.advance(1.0)
    task = await service.get(task_id)
    assert len(calls) == 3  # two deferrals, then the third Retry was the one attempt, which failed
    assert (task.status, task.attempts) == (TaskStatus.DEAD, 1)
    assert "deferred 2 times already" in (task.error or "")


def test_retry_takes_a_number_of_seconds() -> None:
    assert Retry(after=-3).after == 0.0
    assert Retry(after=10**9).after == 86_400.0
    for bad in (float("nan"), "5", True):
        with pytest.raises(TypeError):
            Retry(after=bad)  # type: ignore[arg-type]
