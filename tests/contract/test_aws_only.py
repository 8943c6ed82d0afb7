"""aws specifics under moto: priority across the four SQS queues, duplicate and stale messages, messages
that carry only ids (payloads up to DynamoDB's item limit), idempotency under concurrent submits, lost
or unsent messages recovered by the sweep, and boto3 kept off the event loop."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from hexq.adapters.aws import AwsBackend, AwsConfig, parse
from hexq.adapters.aws import items as aws_items
from hexq.adapters.aws.resources import TABLE_SCHEMA
from hexq.core import outcome
from hexq.core.clock import FakeClock, stamped
from hexq.core.errors import BackendUnavailable, ConfigurationError, ValidationError
from hexq.core.model import Priority, Settlement, Task, TaskQuery, TaskStatus
from hexq.core.ports import Backend
from hexq.core.registry import Registry, TaskSpec
from hexq.core.retry import RetryPolicy
from hexq.core.schedule import Schedule
from hexq.core.services import SubmitRequest, TaskService
from hexq.core.worker import Invocation, WorkerConfig
from hexq.functions.bootstrap import make_backend

pytestmark = pytest.mark.aws
MakeTask = Callable[..., Task]
LEASE = 30.0


Factory = Callable[[str], Any]


@pytest.fixture
async def aws(aws_backend: Backend) -> AsyncIterator[AwsBackend]:
    assert isinstance(aws_backend, AwsBackend)
    yield aws_backend


@pytest.fixture
def sqs(aws_clients: Factory, aws: AwsBackend) -> Any:
    return aws_clients("sqs")


def queue_url(sqs: Any, backend: AwsBackend, level: Priority = Priority.NORMAL) -> str:
    return str(sqs.get_queue_url(QueueName=backend.config.queue(level))["QueueUrl"])


def depth(sqs: Any, backend: AwsBackend, level: Priority = Priority.NORMAL) -> int:
    """Messages in the level's queue, visible or not."""
    url = queue_url(sqs, backend, level)
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


async def claim(backend: Backend, n: int = 1, queues: tuple[str, ...] = ("default",)) -> list[Task]:
    return [lease.task for lease in await backend.claim(queues, n, lease_seconds=LEASE, worker_id="w1")]


class Recorder:
    """A client factory whose clients note every call (operation, thread) and can fail chosen operations."""

    def __init__(self, make: Factory, fail: dict[str, Exception] | None = None, delay: float = 0.0) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail = dict(fail or {})
        self.delay = delay
        self._make = make

    def __call__(self, service: str) -> Any:
        return _Recording(self._make(service), self)


class _Recording:
    def __init__(self, client: Any, recorder: Recorder) -> None:
        self._client, self._recorder = client, recorder

    def close(self) -> None:
        self._client.close()

    def __getattr__(self, operation: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self._recorder.calls.append((operation, threading.get_ident()))
            if operation in self._recorder.fail:
                raise self._recorder.fail.pop(operation)
            if self._recorder.delay:
                threading.Event().wait(self._recorder.delay)
            return getattr(self._client, operation)(*args, **kwargs)

        return call


def twin(backend: AwsBackend, clock: FakeClock, recorder: Recorder, **config: Any) -> AwsBackend:
    """Another backend object on the same table and queues, with the recorder's clients."""
    settings = AwsConfig(**{"region": "us-east-1", "prefix": backend.config.prefix, "long_poll": 1, **config})
    return AwsBackend(settings, clock, client_factory=recorder)


# -- delivery ---------------------------------------------------------------------------------------------
async def test_priority_order_across_the_four_queues(aws: AwsBackend, make_task: MakeTask, sqs: Any) -> None:
    levels = [p for p in Priority for _ in range(3)]
    random.Random(3).shuffle(levels)
    await aws.enqueue([make_task(priority=p) for p in levels])

    claimed = [t.priority for _ in levels for t in await claim(aws)]

    assert claimed == sorted(levels, reverse=True)
    assert [depth(sqs, aws, level) for level in Priority] == [0, 0, 0, 0]


async def test_a_duplicate_delivery_is_claimed_once(aws: AwsBackend, make_task: MakeTask, sqs: Any) -> None:
    task = make_task()
    await aws.enqueue([task])
    sqs.send_message(QueueUrl=queue_url(sqs, aws, Priority.NORMAL), MessageBody=json.dumps({"task_id": task.id}))
    assert depth(sqs, aws) == 2  # SQS is at-least-once: two deliveries of one task

    assert [t.id for t in await claim(aws, 10)] == [task.id]
    assert await claim(aws, 10) == []
    assert depth(sqs, aws) == 0  # the stale duplicate was deleted, not left to come back


async def test_a_message_for_a_cancelled_task_is_dropped(aws: AwsBackend, make_task: MakeTask, sqs: Any) -> None:
    task = make_task()
    await aws.enqueue([task])
    assert await aws.transition(task.moved_to(TaskStatus.CANCELLED), expected=TaskStatus.QUEUED) is not None

    assert await claim(aws) == []
    assert depth(sqs, aws) == 0
    assert (await aws.get(task.id)).status is TaskStatus.CANCELLED  # type: ignore[union-attr]


async def test_a_message_that_names_no_task_is_dropped(aws: AwsBackend, make_task: MakeTask, sqs: Any) -> None:
    for body in ("not json", json.dumps({"id": 1}), json.dumps({"task_id": "unknown"})):
        sqs.send_message(QueueUrl=queue_url(sqs, aws, Priority.NORMAL), MessageBody=body)
    task = make_task()
    await aws.enqueue([task])

    assert [t.id for t in await claim(aws, 10)] == [task.id]
    assert depth(sqs, aws) == 0


async def test_another_queues_message_is_handed_back_at_once(aws: AwsBackend, make_task: MakeTask) -> None:
    task = make_task(queue="b")
    await aws.enqueue([task])

    assert await claim(aws, 10, ("a",)) == []
    assert [t.id for t in await claim(aws, 10, ("b",))] == [task.id]  # visible again, not after 30 s


async def test_claim_ids_leases_exactly_the_named_queued_tasks(aws: AwsBackend, make_task: MakeTask, sqs: Any) -> None:
    first, second, third = make_task(), make_task(queue="other"), make_task()
    await aws.enqueue([first, second, third])

    leases = await aws.claim_ids([first.id, second.id, "unknown", first.id], lease_seconds=LEASE, worker_id="w")

    assert [lease.task.id for lease in leases] == [first.id, second.id]
    assert [t.id for t in await claim(aws, 10, ("default", "other"))] == [third.id]  # stale messages dropped
    assert depth(sqs, aws) == 0


async def test_claim_ids_leaves_a_paused_queues_tasks_queued(aws: AwsBackend, make_task: MakeTask) -> None:
    """The SQS event-source path names tasks, not queues: a paused queue's stay queued (their records go back to
    SQS as batch item failures), and are leased once it is resumed."""
    kept, other = make_task(queue="emails"), make_task()
    await aws.enqueue([kept, other])
    await aws.pause("emails")

    leases = await aws.claim_ids([kept.id, other.id], lease_seconds=LEASE, worker_id="w")

    assert [lease.task.id for lease in leases] == [other.id]
    assert (stored := await aws.get(kept.id)) is not None and stored.status is TaskStatus.QUEUED
    await aws.resume("emails")
    assert [lease.task.id for lease in await aws.claim_ids([kept.id], lease_seconds=LEASE, worker_id="w")] == [kept.id]


async def test_a_worker_invocation_drains_the_queues(aws: AwsBackend, clock: FakeClock, sqs: Any) -> None:
    registry = Registry()
    registry.register(TaskSpec("echo", lambda payload: payload))
    service = TaskService(aws, aws, registry, clock)
    ids = [(await service.submit(SubmitRequest("echo", {"i": i}, priority=Priority(i % 4)))).task.id
           for i in range(30)]

    config = WorkerConfig(worker_id="w1", concurrency=8, idle_wait=0.01, budget=20.0, grace=1.0)
    report = await Invocation(aws, registry, config).run()

    assert (report.claimed, report.succeeded, report.stale, report.reason) == (30, 30, 0, "empty")
    assert [(await aws.get(i)).result for i in ids] == [{"i": i} for i in range(30)]  # type: ignore[union-attr]
    assert [depth(sqs, aws, level) for level in Priority] == [0, 0, 0, 0]


# -- payloads: messages carry ids, DynamoDB carries the task ------------------------------------------------
async def test_a_300_kib_payload_is_stored_and_runs(aws: AwsBackend, make_task: MakeTask, clock: FakeClock) -> None:
    task = make_task(payload={"blob": "x" * 300 * 1024})
    await aws.enqueue([task])

    [lease] = await aws.claim(["default"], 1, lease_seconds=LEASE, worker_id="w1")
    assert lease.task.payload == task.payload
    done = outcome.succeeded(lease.task, {"size": len(task.payload["blob"])})
    assert await aws.settle([Settlement(lease, done)]) == [True]
    assert await aws.get(task.id) == stamped(done, clock.now())


async def test_the_item_limit_is_checked_before_any_call(aws: AwsBackend, make_task: MakeTask,
                                                         clock: FakeClock, aws_clients: Factory) -> None:
    recorder = Recorder(aws_clients)
    backend = twin(aws, clock, recorder)
    empty = make_task(payload={"blob": ""})
    room = aws_items.MAX_ITEM_BYTES - aws_items.SETTLE_HEADROOM - aws_items.item_size(
        aws_items.new_task_item(empty, 2**63, clock.now(), 1.0))
    largest, too_large = make_task(payload={"blob": "x" * room}), make_task(payload={"blob": "x" * (room + 1)})

    with pytest.raises(ValidationError) as refused:
        await backend.enqueue([make_task(), too_large])
    assert refused.value.field == "payload"
    assert recorder.calls == []  # neither DynamoDB nor SQS was called

    assert await backend.enqueue([largest]) == [largest]
    [lease] = await backend.claim(["default"], 1, lease_seconds=LEASE, worker_id="w" * 64)
    failed = outcome.failed(lease.task, "e" * 1000, RetryPolicy(), retryable=False)
    assert await backend.settle([Settlement(lease, failed)]) == [True]
    assert await backend.get(largest.id) == stamped(failed, clock.now())  # the headroom took the run's additions


async def test_a_result_too_large_to_store_is_replaced_by_a_note(aws: AwsBackend, make_task: MakeTask,
                                                                 clock: FakeClock) -> None:
    await aws.enqueue([make_task()])
    [lease] = await aws.claim(["default"], 1, lease_seconds=LEASE, worker_id="w1")

    assert await aws.settle([Settlement(lease, outcome.succeeded(lease.task, "r" * 500_000))]) == [True]

    stored = await aws.get(lease.task.id)
    assert stored is not None and stored.status is TaskStatus.SUCCEEDED and stored.result is None
    assert stored.error is not None and stored.error.startswith("result dropped")


# -- idempotency ----------------------------------------------------------------------------------------------
async def test_ten_concurrent_submits_of_one_key_store_one_task(aws: AwsBackend, make_task: MakeTask, sqs: Any) -> None:
    candidates = [make_task(idempotency_key="order-42", payload={"order": 42}) for _ in range(10)]  # retries
    results: list[Task] = []
    start = threading.Barrier(len(candidates))

    def submit(task: Task) -> None:
        start.wait()
        results.extend(asyncio.run(aws.enqueue([task])))

    threads = [threading.Thread(target=submit, args=(task,)) for task in candidates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 10 and len({t.id for t in results}) == 1
    assert [t.id for t in (await aws.query(TaskQuery())).items] == [results[0].id]
    assert depth(sqs, aws) == 1  # only the winner sent a message


# -- nothing lost when SQS misses ----------------------------------------------------------------------------
async def test_a_failed_send_is_sent_again_by_the_sweep(aws: AwsBackend, make_task: MakeTask,
                                                        clock: FakeClock, aws_clients: Factory) -> None:
    unreachable = EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    backend = twin(aws, clock, Recorder(aws_clients, fail={"send_message_batch": unreachable}))
    task = make_task()

    assert await backend.enqueue([task]) == [task]  # stored: the client gets its task, no 503
    assert await claim(backend) == []
    assert await backend.promote_due(limit=10) == 0  # promotes nothing, re-sends the unsent message
    assert [t.id for t in await claim(backend)] == [task.id]


async def test_a_lost_message_is_sent_again_after_resend_after(aws: AwsBackend, make_task: MakeTask,
                                                               clock: FakeClock, sqs: Any) -> None:
    task = make_task()
    await aws.enqueue([task])
    sqs.purge_queue(QueueUrl=queue_url(sqs, aws, Priority.NORMAL))

    await aws.promote_due(limit=10)
    assert await claim(aws) == []  # not yet: the message may only be waiting in a long queue
    clock.advance(900)
    await aws.promote_due(limit=10)
    assert [t.id for t in await claim(aws)] == [task.id]


async def test_a_message_redriven_to_the_dead_letter_queue_is_replaced(aws: AwsBackend, make_task: MakeTask,
                                                                       clock: FakeClock, sqs: Any) -> None:
    task = make_task(queue="b")
    await aws.enqueue([task])
    for _ in range(6):  # claimers of another queue receive it and hand it back; after 5 receives SQS redrives it
        assert await claim(aws, 1, ("a",)) == []
    assert depth(sqs, aws) == 0

    clock.advance(900)
    await aws.promote_due(limit=10)
    assert [t.id for t in await claim(aws, 1, ("b",))] == [task.id]


# -- the event loop, errors, configuration ---------------------------------------------------------------------
async def test_boto3_calls_run_off_the_event_loop(aws: AwsBackend, make_task: MakeTask, clock: FakeClock,
                                                  aws_clients: Factory) -> None:
    recorder = Recorder(aws_clients, delay=0.02)
    backend = twin(aws, clock, recorder)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    running = asyncio.create_task(ticker())
    await backend.enqueue([make_task(idempotency_key="k"), make_task(status=TaskStatus.SCHEDULED)])
    [lease] = await backend.claim(["default"], 1, lease_seconds=LEASE, worker_id="w")
    await backend.extend([lease], LEASE)
    await backend.settle([Settlement(lease, outcome.succeeded(lease.task, 1))])
    await backend.get(lease.task.id)
    await backend.query(TaskQuery())
    await backend.stats()
    await backend.put_schedule(Schedule("s", "@every 1m", "echo", next_run=60.0))
    await backend.advance_schedule("s", 60.0, 120.0)
    await backend.schedules()
    await backend.acquire("key", 1.0, 1)
    await backend.promote_due(10)
    await backend.reclaim_expired(10, LEASE)
    await backend.purge_finished(0, 10)
    await backend.ping()
    running.cancel()

    loop_thread = threading.get_ident()
    assert len(recorder.calls) > 20
    assert [op for op, thread in recorder.calls if thread == loop_thread] == []
    assert ticks > len(recorder.calls)  # the loop kept running while each call waited 20 ms in its thread


class _Down:
    """A client whose every call fails the way botocore does when AWS cannot be reached or throttles."""

    def __init__(self, error: Exception) -> None:
        self._error = error

    def close(self) -> None:
        pass

    def __getattr__(self, operation: str) -> Any:
        def fail(**kwargs: Any) -> Any:
            raise self._error

        return fail


@pytest.mark.parametrize("error", [
    EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
    ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "GetItem"),
    ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "Query"),
    ClientError({"Error": {"Code": "InternalServerError"}, "ResponseMetadata": {"HTTPStatusCode": 500}}, "Query"),
], ids=["unreachable", "throughput", "throttling", "5xx"])
async def test_outages_are_backend_unavailable(error: Exception, clock: FakeClock) -> None:
    backend = AwsBackend(AwsConfig("us-east-1"), clock, client_factory=lambda service: _Down(error))

    for call in (backend.get("t"), backend.claim(["default"], 1, lease_seconds=1, worker_id="w"), backend.ping(),
                 backend.stats(), backend.acquire("k", 1.0, 1)):
        with pytest.raises(BackendUnavailable) as raised:
            await call
        assert raised.value.backend == "aws" and raised.value.__cause__ is error


async def test_a_missing_table_is_backend_unavailable(aws: AwsBackend, clock: FakeClock,
                                                      aws_clients: Factory) -> None:
    backend = twin(aws, clock, Recorder(aws_clients), prefix="missing")

    with pytest.raises(BackendUnavailable, match="ResourceNotFoundException"):
        await backend.ping()


async def test_ttl_expires_finished_tasks_and_their_keys(aws: AwsBackend, make_task: MakeTask,
                                                        clock: FakeClock, aws_clients: Factory) -> None:
    backend = twin(aws, clock, Recorder(aws_clients), ttl=3600)
    task = make_task(idempotency_key="k")
    await backend.enqueue([task])
    [lease] = await backend.claim(["default"], 1, lease_seconds=LEASE, worker_id="w")
    await backend.settle([Settlement(lease, outcome.succeeded(lease.task, 1))])

    db = aws_clients("dynamodb")
    for key in (aws_items.task_key(task.id), aws_items.idem_key(task.tenant, "k")):
        item = db.get_item(TableName=aws.config.table, Key=key)["Item"]
        assert float(item["expires_at"]["N"]) == int(clock.now() + 3600)


@pytest.mark.parametrize("task_id", ["x" * 5000, "\ud800", "", "a\nb"], ids=["long", "surrogate", "empty", "newline"])
async def test_an_id_that_cannot_be_a_key_names_no_task(aws: AwsBackend, make_task: MakeTask, task_id: str) -> None:
    assert await aws.get(task_id) is None
    assert await aws.transition(make_task(id=task_id, status=TaskStatus.CANCELLED), TaskStatus.QUEUED) is None
    with pytest.raises(ValidationError):
        await aws.enqueue([make_task(id=task_id)])


def test_template_yaml_creates_the_table_the_adapter_uses() -> None:
    cfn_yaml = pytest.importorskip("cfnlint.decode.cfn_yaml")
    template = cfn_yaml.load(str(Path(__file__).resolve().parents[2] / "template.yaml"))
    table = template["Resources"]["TaskTable"]["Properties"]

    def indexes(spec: Any) -> list[Any]:
        return sorted(([i["IndexName"], i["KeySchema"], i["Projection"]] for i in spec), key=str)

    assert sorted(map(str, table["AttributeDefinitions"])) == sorted(map(str, TABLE_SCHEMA["AttributeDefinitions"]))
    assert table["KeySchema"] == TABLE_SCHEMA["KeySchema"]
    assert indexes(table["GlobalSecondaryIndexes"]) == indexes(TABLE_SCHEMA["GlobalSecondaryIndexes"])
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert template["Resources"]["TaskTable"]["Properties"]["TableName"] == {"Fn::Sub": "${AWS::StackName}-tasks"}


def test_the_url_names_the_resources() -> None:
    config = parse("aws://?region=eu-west-1&prefix=shop&endpoint=http://127.0.0.1:4566&ttl=60&long_poll=5", {})

    assert (config.region, config.endpoint, config.ttl, config.long_poll) == ("eu-west-1", "http://127.0.0.1:4566",
                                                                              60.0, 5)
    assert (config.table, config.queue(Priority.CRITICAL), config.dead_letter_queue) == ("shop-tasks",
                                                                                         "shop-critical", "shop-dlq")
    assert parse("aws://", {"AWS_REGION": "us-east-2"}).region == "us-east-2"


@pytest.mark.parametrize("url", ["aws://", "aws://?region=us-east-1&prefix=a/b", "aws://?region=us-east-1&bucket=x",
                                 "aws://?region=us-east-1&long_poll=21", "aws://?region=us-east-1&endpoint=ftp://x",
                                 "aws://host?region=us-east-1"])
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        parse(url, {})


def test_bootstrap_builds_the_backend_without_connecting(clock: FakeClock) -> None:
    backend = make_backend("aws://?region=us-east-1&prefix=hexq", clock)

    assert isinstance(backend, AwsBackend) and backend.name == "aws"
    assert backend.config.table == "hexq-tasks"



async def test_a_by_status_index_made_before_created_at_was_projected_still_filters_by_time(
        make_task: MakeTask, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    moto = pytest.importorskip("moto")
    from tests.contract.conftest import aws_client_factory, fake_aws_credentials

    projection = {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["type", "queue", "tenant", "priority"]}
    old_index = {**TABLE_SCHEMA["GlobalSecondaryIndexes"][0], "Projection": projection}  # type: ignore[index]
    monkeypatch.setitem(TABLE_SCHEMA, "GlobalSecondaryIndexes",
                        [old_index, *TABLE_SCHEMA["GlobalSecondaryIndexes"][1:]])  # type: ignore[index]
    fake_aws_credentials(monkeypatch)
    with moto.mock_aws():
        backend = AwsBackend(AwsConfig("us-east-1", prefix="hexq-old"), clock, client_factory=aws_client_factory())
        await backend.create_resources()
        old, new = make_task(), make_task()
        await backend.enqueue([old])
        clock.advance(10)
        await backend.enqueue([new])
        entry = backend._table.call("query", IndexName=aws_items.BY_STATUS, KeyConditionExpression="#s = :s",
                                    ExpressionAttributeNames={"#s": "status"},
                                    ExpressionAttributeValues={":s": {"S": "queued"}})["Items"][0]
        assert "created_at" not in entry and "priority" in entry  # the index of a table made by an older hexq

        since = (await backend.get(new.id)).created_at  # type: ignore[union-attr]
        after = await backend.query(TaskQuery(created_after=since))
        before = await backend.query(TaskQuery(created_before=since))
        await backend.close()
    assert [t.id for t in after.items] == [new.id] and after.complete
    assert [t.id for t in before.items] == [old.id] and before.complete
