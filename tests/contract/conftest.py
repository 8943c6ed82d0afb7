"""One contract suite for every backend: each test runs once per param of the `backend` fixture.

A backend joins the suite by adding a param here and a `<name>_backend` fixture; only the
backend a test asks for is built (getfixturevalue), so a missing server skips only its own leg.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from redis_server import LinkedClock, fresh_backend

from hexq.adapters.memory import MemoryBackend
from hexq.adapters.sqlite import SQLiteBackend
from hexq.core.clock import FakeClock
from hexq.core.model import Task, new_task_id
from hexq.core.ports import Backend, TaskIds
from hexq.core.registry import Registry, TaskSpec
from hexq.core.retry import RetryPolicy
from hexq.core.services import TaskService

BACKENDS = ["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis),
            pytest.param("redis_cluster", marks=pytest.mark.redis),
            pytest.param("redis_sharded", marks=pytest.mark.redis), pytest.param("aws", marks=pytest.mark.aws)]
# redis_sharded: the cluster spread over its masters, every queue its own shard (adapters/redis/sharded.py)
SHARDED = "?shards=per-queue"


@pytest.fixture
def clock() -> FakeClock:
    # Linked, so that advance() also moves the Redis backends' test-clock key (see hexq.adapters.redis).
    return LinkedClock()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.getfixturevalue(f"{request.param}_backend")  # type: ignore[no-any-return]


@pytest.fixture
def memory_backend(clock: FakeClock) -> Backend:
    return MemoryBackend(clock)


@pytest.fixture
async def sqlite_backend(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Backend]:
    backend = SQLiteBackend(str(tmp_path / "hexq.db"), clock)
    yield backend
    await backend.close()


@pytest.fixture
async def redis_backend(redis_url: str, clock: LinkedClock) -> AsyncIterator[Backend]:
    async with fresh_backend(redis_url, clock) as backend:
        yield backend


@pytest.fixture
async def redis_cluster_backend(redis_cluster_url: str, clock: LinkedClock) -> AsyncIterator[Backend]:
    async with fresh_backend(redis_cluster_url, clock) as backend:
        yield backend


@pytest.fixture
async def redis_sharded_backend(redis_cluster_url: str, clock: LinkedClock) -> AsyncIterator[Backend]:
    async with fresh_backend(redis_cluster_url + SHARDED, clock) as backend:
        yield backend


def _handler(payload: dict[str, Any]) -> Any:
    return payload


@pytest.fixture
def registry() -> Registry:
    """A fresh registry per test: `echo` on the default queue, `flaky` with exact (unjittered) backoff."""
    registry = Registry()
    registry.register(TaskSpec("echo", _handler))
    registry.register(TaskSpec("flaky", _handler, max_attempts=3, retry=RetryPolicy(base=10.0, cap=100.0, jitter=0.0)))
    registry.register(TaskSpec("mail", _handler, queue="emails"))
    return registry


@pytest.fixture
def service(backend: Backend, registry: Registry, clock: FakeClock) -> TaskService:
    return TaskService(backend, backend, registry, clock)


@pytest.fixture
def make_task(clock: FakeClock, request: pytest.FixtureRequest) -> Callable[..., Task]:
    """Build a queued `echo` task due now; keyword arguments override any Task field. On a backend that chooses
    its tasks' ids (ports.TaskIds: a sharded Redis names the shard in the id) the id is the one it would give,
    as TaskService asks it; an id passed in is kept (a sharded backend stores it in its legacy shard)."""
    ids = request.getfixturevalue("backend") if "backend" in request.fixturenames else None

    def make(**fields: Any) -> Task:
        defaults: dict[str, Any] = {"id": new_task_id(), "type": "echo", "payload": {}, "run_at": clock.now(),
                                    "created_at": clock.now()}
        task = Task(**(defaults | fields))
        if isinstance(ids, TaskIds) and "id" not in fields:
            task = replace(task, id=ids.task_ids([task])[0])
        return task

    return make


# -- aws: DynamoDB + SQS under moto, in process (no request leaves the machine) --------------------------
AWS_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": "/nonexistent/hexq-test", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/hexq-test"}
AWS_UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS",
             "AWS_ENDPOINT_URL_DYNAMODB", "AWS_CA_BUNDLE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")


def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a region, and nothing that could point boto3 at a real account or endpoint."""
    for name, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(name, value)
    for name in AWS_UNSET:
        monkeypatch.delenv(name, raising=False)


def sqs_best_effort_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto deliver standard-queue messages newest first.

    moto hands them out in send order, which real SQS does not promise ("best-effort ordering").
    Newest first is an order SQS may produce, so the aws leg runs against what SQS guarantees
    rather than what moto happens to do: every test that relies on FIFO fails on aws, and is
    marked as the capability gap below instead of passing by luck.
    """
    from moto.sqs.models import Queue

    def newest_first(queue: Queue) -> list[Any]:
        return [m for m in reversed(queue._messages) if m.visible and not m.delayed]

    monkeypatch.setattr(Queue, "messages", property(newest_first))


_BOTO_SESSIONS: list[Any] = []


def aws_client_factory() -> Callable[[str], Any]:
    """Clients from one boto3 session for the whole run: it loads the service models once (a fresh
    session per test costs ~0.2 s). Call it with the fake credentials in place; clients are per test."""
    import boto3

    if not _BOTO_SESSIONS:
        _BOTO_SESSIONS.append(boto3.session.Session(region_name="us-east-1"))
    return lambda service: _BOTO_SESSIONS[0].client(service, region_name="us-east-1")


def dynamodb_atomic_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto's DynamoDB handle one request at a time.

    DynamoDB checks a ConditionExpression and writes atomically; moto checks, then writes, with no
    lock, so two threads can both pass the same condition (seen: a token bucket handing out six
    tokens of five). The aws adapter's fencing and idempotency rest on that atomicity, so the
    emulator must give it. (SQS is left concurrent: a long poll must not hold up other requests.)
    """
    from moto.dynamodb.responses import DynamoHandler

    lock = threading.Lock()
    original = DynamoHandler.call_action

    def atomic(self: DynamoHandler) -> Any:
        with lock:
            return original(self)

    monkeypatch.setattr(DynamoHandler, "call_action", atomic)


@pytest.fixture
def aws_clients(aws_backend: Backend) -> Callable[[str], Any]:
    """The client factory of the aws leg, inside its mock_aws (for tests that use SQS or DynamoDB by hand)."""
    return aws_client_factory()


@pytest.fixture
async def aws_backend(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Backend]:
    """A fresh table and queues per test, in moto's mock_aws; one-second long polls keep waits short."""
    moto = pytest.importorskip("moto")
    from hexq.adapters.aws import AwsBackend, AwsConfig

    fake_aws_credentials(monkeypatch)
    sqs_best_effort_order(monkeypatch)
    dynamodb_atomic_writes(monkeypatch)
    with moto.mock_aws():
        backend = AwsBackend(AwsConfig("us-east-1", prefix="hexq-test", long_poll=1), clock,
                             client_factory=aws_client_factory())
        await backend.create_resources()
        yield backend
        await backend.close()


# -- capabilities: what each backend gives beyond the ports, and the tests that rely on it ----------------
# A test that relies on a capability a backend lacks is marked xfail(strict=True) for that backend: the
# gap is stated and checked (it must keep failing), never skipped; only a gap that shows as a race (RACES)
# gets a non-strict xfail. The table is printed after a run.
CAPABILITIES: dict[str, str] = {
    "priority": "strict priority across the four levels",
    "fifo": "FIFO within a priority level for one tenant (a released or retried task keeps its place)",
    "exactly_once_receive": "the transport hands a queued task out once (no duplicate deliveries)",
    "atomic_tenant_cap": "the per-tenant cap is checked in the enqueue's own atomic step (no overshoot)",
    "fair": "fair queues: tenants take turns within a priority level, FIFO within a tenant, optional weights",
    "listing_order": "a listing across queues is in submit order, even for tasks created in the same instant",
    "cap_across_queues": "a bulk submit over a tenant's cap is refused whole, whatever queues its tasks are for",
    "idempotency_across_queues": "an idempotency key reused for another queue is refused (422), not a new task",
}
HAS: dict[str, frozenset[str]] = {
    "memory": frozenset(CAPABILITIES),
    "sqlite": frozenset(CAPABILITIES),
    "redis": frozenset(CAPABILITIES),
    "redis_cluster": frozenset(CAPABILITIES),
    "aws": frozenset({"priority", "listing_order", "cap_across_queues", "idempotency_across_queues"}),  # no "fair"
    "redis_sharded": frozenset(CAPABILITIES) - {"listing_order", "cap_across_queues", "idempotency_across_queues"},
}
GAPS: dict[tuple[str, str], str] = {
    ("aws", "fifo"): "SQS standard queues are best-effort ordered, and a released or retried task is sent "
                     "to the back of its level",
    ("aws", "exactly_once_receive"): "SQS delivers at least once; the conditional claim drops duplicates, so "
                                     "each queued task is still claimed once (test_aws_only)",
    ("aws", "fair"): "a claim receives from one SQS queue per priority level, in the order SQS hands messages "
                     "out; it cannot choose a tenant's message, so a tenant's backlog is served before a later "
                     "tenant's tasks (a queue per tenant would be needed)",
    ("aws", "atomic_tenant_cap"): "DynamoDB has no cheap atomic count: the cap is counted, then the tasks "
                                  "stored, so concurrent submits can overshoot it by their number",
    ("redis_sharded", "listing_order"): "each shard numbers its own tasks, so a listing over several queues is "
                                        "merged by creation time: tasks created in the same microsecond in "
                                        "different queues come in shard order",
    ("redis_sharded", "cap_across_queues"): "each shard checks the cap against its own count, atomically: a "
                                            "tenant may hold up to the cap in every queue (hot-queue shard)",
    ("redis_sharded", "idempotency_across_queues"): "keys are kept per shard; a key reused for another queue "
                                                    "makes a second task there (the same request always meets "
                                                    "its first copy: same queue, same shard)",
}
RELIES_ON: dict[str, tuple[str, ...]] = {
    "test_strict_priority_across_the_four_levels": ("priority", "fifo"),  # FIFO within each level, too
    "test_fifo_within_a_priority_level": ("fifo",),
    "test_claim_takes_only_from_the_given_queues": ("fifo",),  # the last claim's order
    "test_batch_claim_takes_up_to_n": ("fifo",),
    "test_priority_is_strict_across_a_queue_set": ("priority",),
    "test_pages_of_a_filtered_query": ("fifo",),  # the claim must take the oldest five
    "test_concurrent_submits_cannot_overshoot_the_cap": ("atomic_tenant_cap",),
    "test_query_lists_newest_first_and_filters": ("listing_order",),  # three queues, one instant
    "test_a_bulk_submit_over_the_cap_is_refused_whole_across_queues": ("cap_across_queues",),
    "test_an_idempotency_key_reused_for_another_queue_is_refused": ("idempotency_across_queues",),
    # test_fairness.py: every test on the `backend` fixture relies on fair queues (and FIFO within a tenant)
    "test_tenants_take_turns_within_a_priority_level": ("fair", "fifo"),
    "test_a_tenant_arriving_behind_a_backlog_is_served_next": ("fair", "fifo"),
    "test_one_tenant_alone_is_served_in_submit_order": ("fifo",),
    "test_a_batch_claim_takes_turns_too": ("fair",),
    "test_priority_stays_strict_across_levels_with_several_tenants": ("priority", "fair", "fifo"),
    "test_cancelling_a_queued_task_keeps_the_others_turns": ("fair", "fifo"),
    "test_paused_queue_resumes_with_turns": ("fair",),
    "test_promoted_tasks_take_turns_from_when_they_are_due": ("fair", "fifo"),
    "test_a_released_task_keeps_its_place": ("fair", "fifo"),
    "test_a_reclaimed_lease_does_not_disturb_the_turns": ("fair", "fifo"),
}
# Gaps that show as a race: a run may or may not meet it, so their xfail is not strict.
RACES: frozenset[tuple[str, str]] = frozenset({("aws", "atomic_tenant_cap")})
_HERE = Path(__file__).parent
_RAN: set[str] = set()


def requires(backend_name: str, capability: str) -> pytest.MarkDecorator | None:
    """The mark for a test that relies on `capability` run on `backend_name`: None, or a strict xfail."""
    if capability in HAS[backend_name]:
        return None
    why = f"capability gap: {backend_name} has no {capability}: {GAPS[backend_name, capability]}"
    return pytest.mark.xfail(strict=(backend_name, capability) not in RACES, reason=why)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("backend") if callspec is not None else None
        if name not in HAS or _HERE not in item.path.parents:
            continue
        _RAN.add(name)
        for capability in RELIES_ON.get(getattr(item, "originalname", item.name), ()):
            mark = requires(name, capability)
            if mark is not None:
                item.add_marker(mark)


def capability_table(backends: list[str]) -> list[str]:
    """The README's capability table (markdown), with the reason for every gap under it."""
    lines = [f"| capability | {' | '.join(backends)} |", f"|---|{'---|' * len(backends)}"]
    for capability, meaning in CAPABILITIES.items():
        cells = ["yes" if capability in HAS[b] else "no" for b in backends]
        lines.append(f"| {capability}: {meaning} | {' | '.join(cells)} |")
    lines += [f"- {b} / {c}: {why}" for (b, c), why in GAPS.items() if b in backends]
    return lines


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _RAN:
        terminalreporter.section("contract capabilities (no = strict xfail where a test relies on it)")
        for line in capability_table([b for b in HAS if b in _RAN]):
            terminalreporter.write_line(line)
