from __future__ import annotations

import asyncio

import pytest

from hexq.adapters.memory import MemoryBackend
from hexq.core import outcome
from hexq.core.clock import FakeClock
from hexq.core.context import current_task
from hexq.core.model import Priority, Settlement, Task, TaskStatus
from hexq.core.registry import Registry
from hexq.core.services import SubmitRequest, TaskService
from hexq.core.worker import Invocation, WorkerConfig


@pytest.fixture
def backend(clock: FakeClock) -> MemoryBackend:
    return MemoryBackend(clock)


@pytest.fixture
def service(backend: MemoryBackend, registry: Registry, clock: FakeClock) -> TaskService:
    return TaskService(backend, backend, registry, clock)


def invocation(backend: MemoryBackend, registry: Registry, clock: FakeClock, **config: object) -> Invocation:
    settings: dict[str, object] = {"worker_id": "w1", "idle_wait": 0.01, "budget": 10.0, "grace": 0.2}
    settings.update(config)
    return Invocation(backend, registry, WorkerConfig(**settings), rand=lambda: 0.0)  # type: ignore[arg-type]


async def submit(service: TaskService, type_: str, payload: dict[str, object] | None = None, **kw: object) -> Task:
    return (await service.submit(SubmitRequest(type_, payload or {}, **kw))).task  # type: ignore[arg-type]


async def until_running(service: TaskService, task_id: str) -> None:
    for _ in range(1000):
        if (await service.get(task_id)).status is TaskStatus.RUNNING:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"task {task_id} never started")


async def test_runs_everything_then_stops_on_an_empty_queue(backend: MemoryBackend, registry: Registry,
                                                            clock: FakeClock, service: TaskService) -> None:
    ids = [(await submit(service, "echo", {"i": i})).id for i in range(25)]
    ids.append((await submit(service, "sync_echo", {"sync": True})).id)
    report = await invocation(backend, registry, clock, concurrency=4).run()
    assert (report.claimed, report.succeeded, report.reason) == (26, 26, "empty")
    done = [await service.get(i) for i in ids]
    assert all(t.status is TaskStatus.SUCCEEDED and t.attempts == 1 and t.worker_id == "w1" for t in done)
    assert done[3].result == {"i": 3}
    assert done[-1].result == {"sync": True}


async def test_higher_priority_runs_first(backend: MemoryBackend, registry: Registry, clock: FakeClock,
                                          service: TaskService) -> None:
    order: list[int] = []

    @registry.task("record")
    async def record(payload: dict[str, int]) -> None:
        order.append(payload["n"])

    for n, level in enumerate([Priority.LOW, Priority.NORMAL, Priority.CRITICAL, Priority.HIGH, Priority.CRITICAL]):
        await submit(service, "record", {"n": n}, priority=level)
    await invocation(backend, registry, clock, concurrency=1).run()
    assert order == [2, 4, 3, 1, 0]


async def test_failure_schedules_a_retry_with_backoff_then_dead_letters(
        backend: MemoryBackend, registry: Registry, clock: FakeClock, service: TaskService) -> None:
    task = await submit(service, "boom", {"message": "nope"})
    report = await invocation(backend, registry, clock).run()
    retried = await service.get(task.id)
    assert (report.retried, retried.status, retried.attempts) == (1, TaskStatus.SCHEDULED, 1)
    assert retried.run_at == clock.now() + 10.0  # base 10, first retry, no jitter
    assert retried.error == "RuntimeError: nope"
    for _ in range(2):
        clock.advance(1000)
        await invocation(backend, registry, clock).run()
    dead = await service.get(task.id)
    assert (dead.status, dead.attempts, dead.finished_at) == (TaskStatus.DEAD, 3, clock.now())


async def test_a_handler_past_its_timeout_fails_the_attempt(backend: MemoryBackend, registry: Registry,
                                                            clock: FakeClock, service: TaskService) -> None:
    task = await submit(service, "slow", {"seconds": 30}, timeout=0.05, max_attempts=1)
    await invocation(backend, registry, clock).run()
    after = await service.get(task.id)
    assert after.status is TaskStatus.DEAD
    assert after.error is not None and after.error.startswith("timeout")


async def test_a_result_that_is_not_json_fails(backend: MemoryBackend, registry: Registry, clock: FakeClock,
                                               service: TaskService) -> None:
    runs: list[int] = []

    @registry.task("bad_result", max_attempts=5)
    async def bad_result(payload: dict[str, object]) -> object:
        runs.append(1)
        return {1, 2}

    task = await submit(service, "bad_result")
    await invocation(backend, registry, clock).run()
    failed = await service.get(task.id)
    # Dead at once: a retry cannot make the result JSON, and would repeat the handler's side effects.
    assert (failed.status, failed.attempts, len(runs)) == (TaskStatus.DEAD, 1, 1)
    assert failed.error == ("result is not JSON (Object of type set is not JSON serializable); the handler ran, "
                            "and is not run again")


async def test_a_failed_attempt_keeps_its_traceback_and_logs_one_warning(
        backend: MemoryBackend, registry: Registry, clock: FakeClock, service: TaskService,
        caplog: pytest.LogCaptureFixture) -> None:
    def inner(n: int) -> None:
        raise KeyError(f"missing {n}")

    @registry.task("deep", max_attempts=2)
    def deep(payload: dict[str, int]) -> None:
        inner(payload["n"])

    task = await submit(service, "deep", {"n": 7})
    with caplog.at_level("WARNING", logger="hexq.worker"):
        await invocation(backend, registry, clock).run()

    failed = await service.get(task.id)
    assert failed.status is TaskStatus.SCHEDULED and failed.error == "KeyError: 'missing 7'"
    assert failed.traceback is not None and "in inner" in failed.traceback
    assert failed.traceback.rstrip().endswith("KeyError: 'missing 7'")
    [record] = [r for r in caplog.records if r.name == "hexq.worker"]
    assert record.levelname == "WARNING" and task.id in record.getMessage() and "retry in" in record.getMessage()
    assert (record.task_id, record.type, record.attempt) == (task.id, "deep", 1)  # type: ignore[attr-defined]
    assert record.traceback == failed.traceback  # type: ignore[attr-defined]


def test_a_traceback_keeps_its_last_characters() -> None:
    try:
        raise ValueError("x" * 20_000)
    except ValueError as exc:
        text = outcome.traceback_of(exc)
    assert len(text) <= outcome.MAX_TRACEBACK + 4 and text.startswith("...") and text.endswith("x" * 100 + "\n")


async def test_unknown_type_at_the_worker_dead_letters_without_retrying(
        backend: MemoryBackend, registry: Registry, clock: FakeClock) -> None:
    stray = Task(id="stray", type="only.on.new.workers", payload={}, max_attempts=5, created_at=clock.now())
    await backend.enqueue([stray])
    report = await invocation(backend, registry, clock).run()
    dead = await backend.get("stray")
    assert report.dead == 1
    assert dead is not None and dead.status is TaskStatus.DEAD and dead.attempts == 1
    assert dead.error is not None and dead.error.startswith("unknown_task_type")


async def test_stop_releases_what_outlives_the_grace(backend: MemoryBackend, registry: Registry,
                                                     clock: FakeClock, service: TaskService) -> None:
    task = await submit(service, "slow", {"seconds": 30})
    stop = asyncio.Event()
    run = asyncio.create_task(invocation(backend, registry, clock, grace=0.05).run(stop))
    await until_running(service, task.id)
    stop.set()
    report = await run
    released = await service.get(task.id)
    assert (report.reason, report.released) == ("stopped", 1)
    assert (released.status, released.attempts, released.worker_id) == (TaskStatus.QUEUED, 1, None)


async def test_stop_lets_short_tasks_finish_within_the_grace(backend: MemoryBackend, registry: Registry,
                                                             clock: FakeClock, service: TaskService) -> None:
    task = await submit(service, "slow", {"seconds": 0.05})
    stop = asyncio.Event()
    run = asyncio.create_task(invocation(backend, registry, clock, grace=5.0).run(stop))
    await until_running(service, task.id)
    stop.set()
    assert (await run).succeeded == 1
    assert (await service.get(task.id)).status is TaskStatus.SUCCEEDED


async def test_heartbeat_keeps_a_long_task_leased(backend: MemoryBackend, registry: Registry, clock: FakeClock,
                                                  service: TaskService) -> None:
    task = await submit(service, "slow", {"seconds": 0.3})
    run = asyncio.create_task(invocation(backend, registry, clock, lease_seconds=0.06).run())
    for _ in range(10):  # the fake clock moves past the original lease many times over
        await asyncio.sleep(0.03)
        clock.advance(0.05)
        assert await backend.reclaim_expired(10, 30.0) == []
    report = await run
    assert (report.succeeded, report.stale) == (1, 0)
    assert (await service.get(task.id)).status is TaskStatus.SUCCEEDED


async def test_a_lost_lease_stops_the_task_and_is_not_settled(backend: MemoryBackend, registry: Registry,
                                                              clock: FakeClock, service: TaskService) -> None:
    task = await submit(service, "slow", {"seconds": 30})
    run = asyncio.create_task(invocation(backend, registry, clock, lease_seconds=0.09).run())
    await until_running(service, task.id)
    clock.advance(1.0)
    [taken] = await backend.reclaim_expired(10, 30.0)  # as the reaper would after a long pause
    report = await run
    assert report.stale == 1
    still = await service.get(task.id)
    assert still.status is TaskStatus.RUNNING  # untouched by the fenced-out worker
    done = still.moved_to(TaskStatus.SUCCEEDED)
    assert await backend.settle([Settlement(taken, done)]) == [True]


async def test_budget_ends_claiming(backend: MemoryBackend, registry: Registry, clock: FakeClock,
                                    service: TaskService) -> None:
    for _ in range(3):
        await submit(service, "echo")
    report = await invocation(backend, registry, clock, budget=0.0).run()
    assert (report.reason, report.claimed) == ("budget", 0)


async def test_idle_wait_zero_still_lets_running_tasks_finish(backend: MemoryBackend, registry: Registry,
                                                              clock: FakeClock, service: TaskService) -> None:
    task = await submit(service, "slow", {"seconds": 0.05})
    report = await asyncio.wait_for(invocation(backend, registry, clock, idle_wait=0.0).run(), timeout=10)
    assert (report.succeeded, report.reason) == (1, "empty")
    assert (await service.get(task.id)).status is TaskStatus.SUCCEEDED


async def test_a_handler_can_see_its_own_task(backend: MemoryBackend, registry: Registry, clock: FakeClock,
                                              service: TaskService) -> None:
    seen: list[tuple[str, int]] = []

    @registry.task("introspect")
    def introspect(payload: dict[str, object]) -> None:  # sync: runs in a thread, the context comes along
        running = current_task()
        seen.append((running.id, running.attempts))

    task = await submit(service, "introspect")
    await invocation(backend, registry, clock).run()
    assert seen == [(task.id, 1)]
    with pytest.raises(LookupError):
        current_task()


async def test_a_type_rate_is_taken_from_the_backends_shared_bucket(backend: MemoryBackend, registry: Registry,
                                                                    clock: FakeClock, service: TaskService) -> None:
    asked: list[tuple[str, float, int]] = []

    class CountingLimiter:
        async def acquire(self, key: str, rate: float, burst: int) -> float:
            asked.append((key, rate, burst))
            return 0.0 if len(asked) % 2 else 0.001  # every other ask has to wait a moment

    registry.task("limited", rate="5/s")(lambda payload: None)
    for _ in range(3):
        await submit(service, "limited")
    await submit(service, "echo")
    config = WorkerConfig(worker_id="w1", idle_wait=0.01, grace=0.2)
    report = await Invocation(backend, registry, config, limiter=CountingLimiter()).run()
    assert report.succeeded == 4
    assert {a for a in asked} == {("type:limited", 5.0, 5)}  # echo has no rate: never asked
    assert len(asked) == 5  # three tokens, two of them after one wait


async def test_a_type_concurrency_caps_it_within_a_worker(backend: MemoryBackend, registry: Registry,
                                                          clock: FakeClock, service: TaskService) -> None:
    running, peak = 0, 0

    @registry.task("narrow", concurrency=2)
    async def narrow(payload: dict[str, object]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1

    for _ in range(8):
        await submit(service, "narrow")
    report = await invocation(backend, registry, clock, concurrency=8).run()
    assert (report.succeeded, peak) == (8, 2)


def test_a_bad_type_rate_is_refused_at_registration(registry: Registry) -> None:
    from hexq.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="fast"):
        registry.task("fast", rate="lots")(lambda payload: None)
