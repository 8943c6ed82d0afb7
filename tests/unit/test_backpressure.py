"""Back pressure (core/backpressure.py): the caps' syntax, the pure judgement, the drain meter, and the
per-process view on a fake clock and a scripted stats read."""

from __future__ import annotations

import asyncio

import pytest

from hexq.adapters.memory import MemoryBackend
from hexq.core.backpressure import (
    MAX_RETRY,
    UNMEASURED_RETRY,
    BackPressure,
    Caps,
    DrainMeter,
    Load,
    Policy,
    Sample,
    judge,
    parse_caps,
)
from hexq.core.clock import FakeClock
from hexq.core.errors import BackendUnavailable, ConfigurationError, Overloaded, ValidationError
from hexq.core.events import NoEvents
from hexq.core.model import Priority, Stats, Task, TaskStatus
from hexq.core.registry import Registry
from hexq.core.services import SubmitRequest, TaskService


# -- the caps' syntax ---------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "default", "by_queue"), [
    ("", 0, {}),
    ("10000", 10000, {}),
    ("emails=500", 0, {"emails": 500}),
    (" 5000 , bulk=0, emails = 50 ", 5000, {"bulk": 0, "emails": 50}),
    ("a:b.c-d=7", 0, {"a:b.c-d": 7}),  # queue names may hold ':' (rpartition splits at the last '=')
])
def test_caps_syntax(text: str, default: float, by_queue: dict[str, float]) -> None:
    caps = parse_caps(text, "HEXQ_MAX_BACKLOG", integer=True)
    assert (caps.default, dict(caps.by_queue)) == (default, by_queue)


def test_a_bare_cap_is_every_queue_but_the_named() -> None:
    caps = parse_caps("5000,bulk=0", "X", integer=True)
    assert (caps.of("default"), caps.of("anything"), caps.of("bulk")) == (5000, 5000, 0)


@pytest.mark.parametrize(("text", "says"), [
    ("x", "'x' is not a cap"),
    ("1.5", "'1.5' is not a cap"),
    ("-1", "'-1' is not a cap"),
    ("emails=", "'emails=' is not a cap"),
    ("1,2", "two caps for every queue"),
    ("q=1,q=2", "queue 'q' two caps"),
    ("bad queue=3", "names no valid queue"),
])
def test_bad_caps_name_the_variable_and_the_entry(text: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match="HEXQ_MAX_BACKLOG") as info:
        parse_caps(text, "HEXQ_MAX_BACKLOG", integer=True)
    assert says in str(info.value)


@pytest.mark.parametrize("text", ["inf", "nan", "-0.5", "soon"])
def test_an_age_cap_is_a_finite_number_of_seconds(text: str) -> None:
    with pytest.raises(ConfigurationError, match="seconds"):
        parse_caps(text, "HEXQ_MAX_OLDEST_AGE", integer=False)
    assert parse_caps("2.5", "HEXQ_MAX_OLDEST_AGE", integer=False).default == 2.5


# -- the judgement ------------------------------------------------------------------------------
BACKLOG_100 = Policy(max_backlog=Caps(100))
AGE_30 = Policy(max_oldest_age=Caps(30))


def test_below_the_cap_is_not_overloaded() -> None:
    pressure = judge("default", Load(backlog=99, drain_rate=10), BACKLOG_100)
    assert (pressure.overloaded, pressure.reason, pressure.retry_after) == (False, None, 0.0)


def test_at_the_cap_retry_after_is_the_time_to_drain_below_it() -> None:
    pressure = judge("default", Load(backlog=150, drain_rate=10), BACKLOG_100)
    assert (pressure.reason, pressure.retry_after) == ("backlog", 5.1)  # (150 - 100 + 1) / 10 per second
    assert judge("default", Load(backlog=100, drain_rate=0.5), BACKLOG_100).retry_after == 2.0


@pytest.mark.parametrize(("load", "seconds"), [
    (Load(backlog=101, drain_rate=1000), 1.0),  # clamped up: never a busy retry loop
    (Load(backlog=100_000, drain_rate=10), MAX_RETRY),  # clamped down
    (Load(backlog=101, drain_rate=0), MAX_RETRY),  # nothing drains (no workers): the longest
    (Load(backlog=101, drain_rate=0, running=2), UNMEASURED_RETRY),  # tasks run, none seen to finish yet
])
def test_retry_after_is_clamped(load: Load, seconds: float) -> None:
    assert judge("default", load, BACKLOG_100).retry_after == seconds


def test_the_age_cap_retry_is_the_expected_wait_less_the_cap() -> None:
    pressure = judge("default", Load(backlog=400, oldest_age=31, drain_rate=10), AGE_30)
    assert (pressure.reason, pressure.retry_after) == ("oldest_age", 10.0)  # 400 / 10 - 30
    assert not judge("default", Load(backlog=400, oldest_age=29, drain_rate=10), AGE_30).overloaded


def test_over_both_caps_the_longer_wait_is_told() -> None:
    both = Policy(max_backlog=Caps(100), max_oldest_age=Caps(5))
    pressure = judge("default", Load(backlog=400, oldest_age=50, drain_rate=10), both)
    assert (pressure.reason, pressure.retry_after) == ("oldest_age", 35.0)  # 40 - 5 beats (400 - 100 + 1) / 10


def test_a_queue_capped_at_zero_is_never_overloaded() -> None:
    policy = Policy(max_backlog=Caps(10, {"bulk": 0}))
    assert not judge("bulk", Load(backlog=10**6), policy).overloaded
    assert judge("other", Load(backlog=10), policy).overloaded


def test_the_error_carries_the_figures() -> None:
    error = judge("emails", Load(backlog=150, oldest_age=3, drain_rate=10), BACKLOG_100).error()
    assert isinstance(error, Overloaded)
    assert (error.queue, error.reason, error.backlog, error.max_backlog, error.retry_after) == (
        "emails", "backlog", 150, 100, 5.1)
    assert "150 tasks are queued, the cap is 100; retry in 6s" in str(error)


# -- the drain meter ----------------------------------------------------------------------------
def _sample(backlog: dict[str, int], running: dict[str, int] | None = None, finished: int = 0) -> Sample:
    return Sample(backlog, running or {}, finished, {})


def test_drain_is_how_much_the_queue_shrank_plus_what_this_process_added() -> None:
    meter = DrainMeter(window=10)
    meter.observe(0, _sample({"q": 100}), {})
    meter.observe(1, _sample({"q": 80}), {})  # 20 left
    meter.observe(2, _sample({"q": 80}), {"q": 30})  # 30 came in from here, the queue stayed put: 30 left
    assert meter.rate("q") == 25.0
    assert meter.rate("other") == 0.0


def test_drain_counts_finished_tasks_shared_by_running_ones() -> None:
    meter = DrainMeter(window=10)
    # Other processes fill both queues as fast as they drain: the depth says nothing; the finished count does.
    meter.observe(0, _sample({"a": 50, "b": 50}, {"a": 3, "b": 1}, finished=1000), {})
    meter.observe(2, _sample({"a": 50, "b": 50}, {"a": 3, "b": 1}, finished=1040), {})
    assert (meter.rate("a"), meter.rate("b")) == (15.0, 5.0)


def test_a_purge_of_finished_tasks_is_no_negative_drain() -> None:
    meter = DrainMeter(window=10)
    meter.observe(0, _sample({"q": 10}, {"q": 1}, finished=5000), {})
    meter.observe(1, _sample({"q": 10}, {"q": 1}, finished=100), {})
    assert meter.rate("q") == 0.0


def test_the_drain_rate_forgets_samples_older_than_its_window() -> None:
    meter = DrainMeter(window=3)
    meter.observe(0, _sample({"q": 1000}), {})
    meter.observe(1, _sample({"q": 900}), {})  # a burst of 100/s ...
    for at in range(2, 8):
        meter.observe(at, _sample({"q": 900 - 10 * (at - 1)}), {})  # ... then 10/s
    assert meter.rate("q") == 10.0


def test_a_long_gap_between_reads_still_measures_the_drain() -> None:
    meter = DrainMeter(window=10)
    meter.observe(0, _sample({"q": 600}), {})
    meter.observe(30, _sample({"q": 300}), {})  # no submit, so no read, for 30 s
    assert meter.rate("q") == 10.0


def test_sample_of_stats_sums_priorities_and_takes_the_oldest() -> None:
    stats = Stats(by_status={TaskStatus.SUCCEEDED: 7, TaskStatus.DEAD: 2, TaskStatus.QUEUED: 9},
                  queued={"q": {Priority.LOW: 4, Priority.HIGH: 5}},
                  depth={("q", Priority.LOW, "running"): 2, ("q", Priority.HIGH, "running"): 1,
                         ("q", Priority.LOW, "dead"): 2},
                  oldest_age={("q", Priority.LOW): 12.0, ("q", Priority.HIGH): 3.0})
    assert Sample.of(stats) == Sample({"q": 9}, {"q": 3}, 9, {"q": 12.0})


# -- the per-process view -----------------------------------------------------------------------
class ScriptedStats:
    """The backend's stats as a test sets them; counts the reads, can fail and can be held mid-read."""

    def __init__(self) -> None:
        self.stats = Stats()
        self.reads = 0
        self.fail = False
        self.gate: asyncio.Event | None = None

    def queued(self, **backlog: int) -> None:
        self.stats = Stats(queued={queue: {Priority.NORMAL: n} for queue, n in backlog.items()})

    async def read(self) -> Stats:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise BackendUnavailable("test", "down")
        return self.stats


def _task(queue: str = "default", status: TaskStatus = TaskStatus.QUEUED) -> Task:
    return Task(id=f"t-{queue}", type="echo", payload={}, queue=queue, status=status)


@pytest.fixture
def backend_stats() -> ScriptedStats:
    return ScriptedStats()


def _pressure(backend_stats: ScriptedStats, clock: FakeClock, policy: Policy = BACKLOG_100) -> BackPressure:
    return BackPressure(policy, backend_stats.read, clock.monotonic, interval=1.0)


async def _read_done() -> None:
    """Let a read that a submit started in the background finish (the scripted read does not block)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_the_view_is_read_at_most_once_per_interval(backend_stats: ScriptedStats, clock: FakeClock) -> None:
    pressure = _pressure(backend_stats, clock)
    for _ in range(50):
        await pressure.admit([_task()])
    assert backend_stats.reads == 1
    clock.advance(0.5)
    await pressure.admit([_task()])
    await _read_done()
    assert backend_stats.reads == 1
    clock.advance(0.5)
    for _ in range(50):
        await pressure.admit([_task()])
    await _read_done()
    assert backend_stats.reads == 2


async def test_a_queue_over_its_cap_is_refused_until_a_read_shows_it_below(
        backend_stats: ScriptedStats, clock: FakeClock) -> None:
    pressure = _pressure(backend_stats, clock)
    backend_stats.queued(default=100)
    with pytest.raises(Overloaded) as info:  # the first submit waits for the first view
        await pressure.admit([_task()])
    assert (info.value.queue, info.value.backlog, info.value.max_backlog) == ("default", 100, 100)
    backend_stats.queued(default=60)
    with pytest.raises(Overloaded):  # the view is not read again within the interval
        await pressure.admit([_task()])
    clock.advance(1.0)
    with pytest.raises(Overloaded):  # judged on the view as it is, while it is read again in the background
        await pressure.admit([_task()])
    await _read_done()
    await pressure.admit([_task()])
    assert backend_stats.reads == 2


async def test_the_retry_after_follows_the_measured_drain(backend_stats: ScriptedStats, clock: FakeClock) -> None:
    pressure = _pressure(backend_stats, clock)
    backend_stats.queued(default=300)
    with pytest.raises(Overloaded) as first:
        await pressure.admit([_task()])
    assert first.value.retry_after == MAX_RETRY  # one sample: no rate measured yet
    clock.advance(1.0)
    backend_stats.queued(default=250)  # 50 a second leave
    [default] = await pressure.pressures()  # a stats answer waits for the fresh read
    assert default.load.drain_rate == 50.0
    with pytest.raises(Overloaded) as second:
        await pressure.admit([_task()])
    assert second.value.retry_after == (250 - 100 + 1) / 50


async def test_this_process_counts_what_it_accepted_between_reads(backend_stats: ScriptedStats,
                                                                  clock: FakeClock) -> None:
    pressure = _pressure(backend_stats, clock)
    backend_stats.queued(default=98)
    await pressure.admit([_task()])
    pressure.accepted([_task(), _task(status=TaskStatus.SCHEDULED)])  # a delayed task is not in the backlog
    await pressure.admit([_task()])
    pressure.accepted([_task()])
    with pytest.raises(Overloaded) as info:
        await pressure.admit([_task()])
    assert info.value.backlog == 100
    assert backend_stats.reads == 1


async def test_an_uncapped_queue_is_never_refused(backend_stats: ScriptedStats, clock: FakeClock) -> None:
    pressure = _pressure(backend_stats, clock, Policy(max_backlog=Caps(0, {"emails": 5})))
    backend_stats.queued(default=10**6, emails=5)
    await pressure.admit([_task("default")])
    pressure.accepted([_task("default")] * 1000)
    await pressure.admit([_task("default")])
    with pytest.raises(Overloaded):
        await pressure.admit([_task("emails")])


async def test_a_batch_is_refused_whole_when_one_queue_is_over(backend_stats: ScriptedStats,
                                                              clock: FakeClock) -> None:
    pressure = _pressure(backend_stats, clock, Policy(max_backlog=Caps(0, {"emails": 5, "reports": 5})))
    backend_stats.queued(emails=1, reports=5)
    with pytest.raises(Overloaded, match="'reports'"):
        await pressure.admit([_task("emails"), _task("reports"), _task("default")])


async def test_a_failed_read_admits_and_is_retried_after_the_interval(backend_stats: ScriptedStats,
                                                                     clock: FakeClock) -> None:
    pressure = _pressure(backend_stats, clock)
    backend_stats.queued(default=500)
    backend_stats.fail = True
    await pressure.admit([_task()])  # no view: nothing to refuse on; the enqueue meets the outage itself
    await pressure.admit([_task()])
    assert backend_stats.reads == 1
    backend_stats.fail = False
    clock.advance(1.0)
    await pressure.admit([_task()])
    await _read_done()
    with pytest.raises(Overloaded):
        await pressure.admit([_task()])
    clock.advance(1.0)
    backend_stats.fail = True
    with pytest.raises(Overloaded):
        await pressure.admit([_task()])
    await _read_done()
    assert backend_stats.reads == 3
    with pytest.raises(Overloaded):  # the last view stands while reads fail
        await pressure.admit([_task()])


async def test_the_first_submits_share_one_read_and_later_ones_never_wait(backend_stats: ScriptedStats,
                                                                         clock: FakeClock) -> None:
    pressure = _pressure(backend_stats, clock)
    backend_stats.queued(default=5)
    backend_stats.gate = asyncio.Event()
    first = [asyncio.create_task(pressure.admit([_task()])) for _ in range(10)]
    await _read_done()
    assert not any(task.done() for task in first)  # no view yet: they wait for the one read
    backend_stats.gate.set()
    await asyncio.gather(*first)
    assert backend_stats.reads == 1

    backend_stats.gate = asyncio.Event()
    clock.advance(1.0)
    for _ in range(10):  # the view is stale and its read is held: each submit is judged on the view it has
        await asyncio.wait_for(pressure.admit([_task()]), 1.0)
    backend_stats.gate.set()
    await _read_done()
    assert backend_stats.reads == 2


async def test_pressures_list_every_capped_queue(backend_stats: ScriptedStats, clock: FakeClock) -> None:
    pressure = _pressure(backend_stats, clock, Policy(max_backlog=Caps(10, {"bulk": 0, "emails": 3})))
    backend_stats.queued(default=4, bulk=50, emails=3)
    listed = {p.queue: (p.load.backlog, p.max_backlog, p.overloaded) for p in await pressure.pressures(["other"])}
    assert listed == {"default": (4, 10, False), "emails": (3, 3, True), "other": (0, 10, False)}


# -- in the task service ------------------------------------------------------------------------
class Rejections(NoEvents):
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def rejected(self, reason: str) -> None:
        self.reasons.append(reason)


@pytest.fixture
def capped(registry: Registry, clock: FakeClock) -> tuple[TaskService, Rejections]:
    backend = MemoryBackend(clock)
    events = Rejections()
    pressure = BackPressure(Policy(max_backlog=Caps(3)), backend.stats, clock.monotonic)
    return TaskService(backend, backend, registry, clock, events=events, pressure=pressure), events


async def test_the_service_refuses_past_the_cap_and_counts_the_rejection(
        capped: tuple[TaskService, Rejections]) -> None:
    service, events = capped
    for _ in range(3):
        await service.submit(SubmitRequest("echo", {}))
    with pytest.raises(Overloaded):
        await service.submit(SubmitRequest("echo", {}))
    assert (await service.stats()).backlog == 3
    assert events.reasons == ["overloaded"]


async def test_a_bulk_submit_is_all_or_nothing(capped: tuple[TaskService, Rejections]) -> None:
    service, _ = capped
    await service.submit_bulk([SubmitRequest("echo", {}), SubmitRequest("echo", {})])
    await service.submit_bulk([SubmitRequest("echo", {}), SubmitRequest("echo", {})])  # 2 < 3: admitted whole
    with pytest.raises(Overloaded):
        await service.submit_bulk([SubmitRequest("echo", {}), SubmitRequest("echo", {}, queue="other")])
    assert (await service.stats()).backlog == 4


async def test_a_bad_request_hears_its_fault_before_the_overload(capped: tuple[TaskService, Rejections]) -> None:
    service, _ = capped
    await service.submit_bulk([SubmitRequest("echo", {})] * 3)
    with pytest.raises(ValidationError):
        await service.submit(SubmitRequest("echo", {}, delay=-1))


async def test_without_caps_the_service_has_no_pressures(registry: Registry, clock: FakeClock) -> None:
    backend = MemoryBackend(clock)
    assert await TaskService(backend, backend, registry, clock).pressures() == []


def test_a_read_left_on_a_closed_loop_does_not_stop_the_next(backend_stats: ScriptedStats, clock: FakeClock) -> None:
    pressure = _pressure(backend_stats, clock)
    asyncio.run(pressure.admit([_task()]))
    clock.advance(1.0)
    backend_stats.gate = asyncio.Event()  # the background read blocks: its loop closes under it
    asyncio.run(pressure.admit([_task()]))
    backend_stats.queued(default=100)
    backend_stats.gate = None
    clock.advance(1.0)

    async def later() -> None:
        await pressure.admit([_task()])
        await _read_done()
        with pytest.raises(Overloaded):
            await pressure.admit([_task()])

    asyncio.run(later())
    assert backend_stats.reads == 3
