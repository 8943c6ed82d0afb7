"""AwsBackend: every Backend operation as blocking boto3 calls run in a worker thread (see hexq.adapters.aws)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from hexq.adapters.aws import breakers, control, listing, schedules, sweeps
from hexq.adapters.aws import leases as lease_reads
from hexq.adapters.aws import workers as registry
from hexq.adapters.aws.config import AwsConfig, ClientFactory, Clients, boto3_factory, parse
from hexq.adapters.aws.errors import translated
from hexq.adapters.aws.queues import LEVELS, Message, Queues
from hexq.adapters.aws.resources import create_resources
from hexq.adapters.aws.table import Table, check_size
from hexq.core import idempotency, quota
from hexq.core.breaker import BreakerState
from hexq.core.clock import SystemClock, stamped
from hexq.core.errors import ValidationError
from hexq.core.model import Lease, Page, Settlement, Stats, Task, TaskQuery, TaskStatus, WorkerInfo
from hexq.core.ports import LEASE_SCAN, Clock
from hexq.core.schedule import Schedule

T = TypeVar("T")
log = logging.getLogger("hexq.aws")

PROMOTE_LIMIT = 100  # due tasks one claim promotes first; the poller's promote_due moves the rest
RESEND_AFTER = 900.0  # seconds a queued task's message may go unclaimed before the sweep sends another
MAX_ROUNDS = 10  # receives per priority level in one claim pass (messages of other queues are skipped)
MAX_QUEUES = 100  # DynamoDB's IN takes at most 100 values


class AwsBackend:
    """A Backend on DynamoDB (the truth: task state, idempotency keys, schedules, buckets) and SQS
    (delivery: one standard queue per priority level).

    Parameters:
        config: region, prefix, endpoint, ttl and long_poll (hexq.adapters.aws.parse of an aws:// URL).
        clock: the time of leases, due times and buckets (tests pass a FakeClock). SQS's own timers
            (long polls, the visibility of received messages) are real time but decide nothing here.
        client_factory: makes a boto3 client per service on first use; default boto3_factory(config).
        resend_after: seconds after which promote_due sends a queued task's message again.

    Raises BackendUnavailable("aws", ...) when AWS cannot be reached, throttles, fails, or the table
    or a queue is missing; ValidationError for a task too large for a DynamoDB item.
    """

    name = "aws"

    def __init__(self, config: AwsConfig, clock: Clock | None = None, *, client_factory: ClientFactory | None = None,
                 resend_after: float = RESEND_AFTER) -> None:
        if resend_after <= 0:
            raise ValueError("resend_after must be above 0")
        self.config = config
        self._clock = clock or SystemClock()
        self._clients = Clients(client_factory or boto3_factory(config))
        self._table = Table(self._clients, config.table, config.ttl)
        self._queues = Queues(self._clients, config)
        self._resend_after = resend_after
        self._paused = control.Paused(self._table)

    @classmethod
    def from_url(cls, url: str, clock: Clock | None = None) -> AwsBackend:
        """aws://?region=...&prefix=...[&endpoint=...] (hexq.adapters.aws.config.parse). Connects lazily."""
        return cls(parse(url), clock)

    async def _run(self, operation: Callable[..., T], *args: object) -> T:
        """Every boto3 call happens here: in a worker thread, so the event loop never blocks on AWS."""
        return await asyncio.to_thread(self._call, operation, *args)

    @staticmethod
    def _call(operation: Callable[..., T], *args: object) -> T:
        with translated():
            return operation(*args)

    async def create_resources(self) -> None:
        """Create the table and queues if missing (tests, emulators); production uses template.yaml."""
        await self._run(create_resources, self.config, self._clients)

    # -- Broker -----------------------------------------------------------------------------
    async def enqueue(self, tasks: Sequence[Task], *, cap: int = 0) -> list[Task]:
        """A cap is counted, then the tasks stored: DynamoDB has no cheap atomic count, so submits that
        race each other may overshoot it by their number (memory, SQLite and Redis check atomically)."""
        return await self._run(self._enqueue, tasks, cap) if tasks else []

    def _enqueue(self, tasks: Sequence[Task], cap: int) -> list[Task]:
        now = self._clock.now()
        tasks = [stamped(task, now, new=True) for task in tasks]
        for task in tasks:  # before any read, write or send
            check_size(task, now)
        # Reads, then writes: a submit racing this one with the same key is caught by the service instead,
        # and racing submits may overshoot the cap by their number.
        earlier = self._table.earlier_lookup()  # one read per key for both checks
        idempotency.check(tasks, earlier)
        if cap:
            quota.check(tasks, cap, lambda task: earlier(task) is not None,
                        lambda tenant: listing.count_waiting(self._table, tenant))
        first: dict[tuple[str, str], int] = {}
        owner = [first.setdefault((t.tenant, t.idempotency_key), i) if t.idempotency_key is not None else i
                 for i, t in enumerate(tasks)]  # a key repeated in the batch returns its first task
        unique = [i for i in range(len(tasks)) if owner[i] == i]
        seqs = dict(zip(unique, self._table.reserve("seq", len(unique)), strict=True))
        plain = {i for i in unique if tasks[i].idempotency_key is None}
        self._table.put_new([(tasks[i], seqs[i]) for i in unique if i in plain], now)
        stored = {i: tasks[i] if i in plain else self._table.put_keyed(tasks[i], seqs[i], now) for i in unique}
        # DynamoDB first, then SQS: a task whose send fails is stored, and the sweep sends it later.
        self._send([stored[i] for i in unique if stored[i] is tasks[i] and tasks[i].status is TaskStatus.QUEUED])
        return [stored[owner[i]] for i in range(len(tasks))]

    def _send(self, tasks: Sequence[Task]) -> None:
        unsent = self._queues.send(tasks) if tasks else []
        if unsent:
            self._table.mark_unsent(unsent)

    async def claim(self, queues: Sequence[str], n: int, *, lease_seconds: float, worker_id: str,
                    wait: float = 0.0) -> list[Lease]:
        wanted = list(dict.fromkeys(queues))
        if n <= 0 or not wanted:
            return []
        if len(wanted) > MAX_QUEUES:
            raise ValidationError(f"the aws backend claims from at most {MAX_QUEUES} queues at once", field="queues")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            # SQS long polls in whole seconds, on the lowest level only (see the hexq.adapters.aws docstring).
            poll = min(self.config.long_poll, round(max(deadline - loop.time(), 0.0)))
            leases = await self._run(self._claim_pass, wanted, n, lease_seconds, worker_id, poll)
            remaining = deadline - loop.time()
            if leases or remaining <= 0:
                return leases or []
            # Under half a second left (or long polling off), or every queue asked for is paused (no receive
            # waited; a resume shows within control.TTL): wait here, then look again.
            if poll == 0 or leases is None:
                await asyncio.sleep(min(remaining, control.TTL))

    def _claim_pass(self, wanted: list[str], n: int, lease_seconds: float, worker_id: str,
                    poll: int) -> list[Lease] | None:
        """The leases of one pass; None when every queue in `wanted` is paused (nothing was received)."""
        now = self._clock.now()
        self._send(sweeps.promote(self._table, now, PROMOTE_LIMIT))
        paused = self._paused.get()
        queues = [queue for queue in wanted if queue not in paused]  # a paused queue's messages are held
        if not queues:
            return None
        leases: list[Lease] = []
        for level in LEVELS:
            wait = poll if level is LEVELS[-1] and not leases else 0
            held: list[Message] = []  # other queues' messages: hidden while this level drains, then handed back
            try:
                for _ in range(MAX_ROUNDS):
                    messages = self._queues.receive(level, n - len(leases), wait) if len(leases) < n else []
                    if not messages:
                        break
                    wait = 0
                    leases += self._take(messages, queues, now, lease_seconds, worker_id, held)
            finally:
                self._queues.release(held)
        return leases

    def _take(self, messages: list[Message], queues: list[str], now: float, lease_seconds: float,
              worker_id: str, held: list[Message]) -> list[Lease]:
        """Claim the tasks `messages` name; delete the messages of claimed and stale tasks, hold the rest."""
        wanted = {None, *queues}  # None: a message without the queue attribute (sent by hand) is tried
        mine = [m for m in messages if m.task_id is not None and m.queue in wanted]
        held += [m for m in messages if m.task_id is not None and m not in mine]
        done = [m for m in messages if m.task_id is None]  # not a task reference: nothing to deliver
        if done:
            log.warning("dropping %d SQS messages that name no task", len(done))
        leases: list[Lease] = []
        for message, token in zip(mine, self._table.reserve("token", len(mine)), strict=True):
            assert message.task_id is not None
            got = self._table.claim(message.task_id, queues, token, now, now + lease_seconds, worker_id)
            if got == "elsewhere":
                held.append(message)
                continue
            if isinstance(got, Lease):
                leases.append(got)
            done.append(message)  # claimed, or not queued any more (cancelled, claimed through a duplicate)
        self._queues.delete(done)
        return leases

    async def claim_ids(self, task_ids: Sequence[str], *, lease_seconds: float, worker_id: str) -> list[Lease]:
        """Lease exactly these tasks, those still queued (in any queue): for an SQS event-source batch,
        where the record itself is the delivery. Not part of the Broker port."""
        return await self._run(self._claim_ids, list(dict.fromkeys(task_ids)), lease_seconds, worker_id)

    def _claim_ids(self, task_ids: list[str], lease_seconds: float, worker_id: str) -> list[Lease]:
        now = self._clock.now()
        tokens = self._table.reserve("token", len(task_ids))
        paused = sorted(self._paused.get())  # their tasks stay queued: the records go back to SQS
        found = [self._table.claim(i, None, t, now, now + lease_seconds, worker_id, paused=paused)
                 for i, t in zip(task_ids, tokens, strict=True)]
        return [lease for lease in found if isinstance(lease, Lease)]

    async def extend(self, leases: Sequence[Lease], lease_seconds: float) -> list[Lease | None]:
        return await self._run(self._extend, leases, lease_seconds) if leases else []

    def _extend(self, leases: Sequence[Lease], lease_seconds: float) -> list[Lease | None]:
        expires = self._clock.now() + lease_seconds
        return [self._table.extend(lease, expires) for lease in leases]

    async def settle(self, settlements: Sequence[Settlement]) -> list[bool]:
        return await self._run(self._settle, settlements) if settlements else []

    def _settle(self, settlements: Sequence[Settlement]) -> list[bool]:
        now = self._clock.now()
        written = [stamped(s.task, now) for s in settlements]
        applied = [self._table.settle(task, s.lease.token, now) for s, task in zip(settlements, written, strict=True)]
        self._send([task for task, ok in zip(written, applied, strict=True) if ok
                    and task.status is TaskStatus.QUEUED])  # released: back in line at once
        return applied

    # -- Sweeper ----------------------------------------------------------------------------
    async def promote_due(self, limit: int) -> int:
        return await self._run(self._promote_due, max(limit, 0))

    def _promote_due(self, limit: int) -> int:
        now = self._clock.now()
        promoted = sweeps.promote(self._table, now, limit)
        self._send(promoted)
        self._send(sweeps.unsent(self._table, now, self._resend_after, limit))  # lost or never sent messages
        return len(promoted)

    async def reclaim_expired(self, limit: int, lease_seconds: float) -> list[Lease]:
        return await self._run(lambda: sweeps.reclaim(self._table, self._clock.now(), max(limit, 0), lease_seconds))

    async def purge_finished(self, older_than: float, limit: int) -> int:
        return await self._run(lambda: sweeps.purge(self._table, self._clock.now() - older_than, max(limit, 0)))

    # -- TaskStore --------------------------------------------------------------------------
    async def get(self, task_id: str) -> Task | None:
        return await self._run(self._table.get, task_id)

    async def query(self, query: TaskQuery) -> Page:
        return await self._run(listing.query, self._table, query)

    async def request_cancel(self, task_id: str) -> Task | None:
        return await self._run(self._table.request_cancel, task_id)

    async def transition(self, task: Task, expected: TaskStatus) -> Task | None:
        return await self._run(self._transition, task, expected)

    def _transition(self, task: Task, expected: TaskStatus) -> Task | None:
        now = self._clock.now()
        task = stamped(task, now)
        if not self._table.transition(task, expected, now):
            return None
        if task.status is TaskStatus.QUEUED:  # replayed: it needs a message
            self._send([task])
        return task

    async def backlog(self) -> int:
        return await self._run(lambda: listing.backlog(self._table, control.paused(self._table)))

    async def stats(self) -> Stats:
        return await self._run(lambda: replace(listing.stats(self._table, self._clock.now()),
                                                paused=control.paused(self._table)))

    # -- LeaseReader ------------------------------------------------------------------------
    async def lease(self, task_id: str) -> Lease | None:
        return await self._run(lease_reads.lease, self._table, task_id)

    async def leases(self, limit: int, *, tenant: str | None = None) -> list[Lease]:
        return await self._run(lease_reads.leases, self._table, limit, tenant, LEASE_SCAN)

    # -- QueueControl -----------------------------------------------------------------------
    async def pause(self, queue: str) -> bool:
        """Other processes' claims see it within control.TTL (their copy of the paused set)."""
        self._paused.forget()
        return await self._run(control.pause, self._table, queue)

    async def resume(self, queue: str) -> bool:
        """Other processes' claims see it within control.TTL; the queue's messages are still in SQS, so the
        next receive gets them."""
        self._paused.forget()
        return await self._run(control.resume, self._table, queue)

    async def paused(self) -> frozenset[str]:
        return await self._run(control.paused, self._table)

    # -- WorkerRegistry ---------------------------------------------------------------------
    async def beat(self, worker: WorkerInfo, ttl: float) -> None:
        await self._run(registry.beat, self._table, worker, ttl, self._clock.now())

    async def leave(self, worker_id: str) -> None:
        await self._run(registry.leave, self._table, worker_id)

    async def workers(self) -> list[WorkerInfo]:
        return await self._run(registry.workers, self._table, self._clock.now())

    # -- ScheduleStore ----------------------------------------------------------------------
    async def now(self) -> float:
        """This process's clock: DynamoDB has no server time a condition or an update can read (see the
        hexq.adapters.aws docstring), so on AWS every hexq process must keep its clock synchronised."""
        return self._clock.now()

    # -- BreakerStore -----------------------------------------------------------------------
    async def breaker_states(self) -> tuple[float, list[BreakerState]]:
        return await self._run(breakers.states, self._table, self._clock)

    async def put_breaker(self, state: BreakerState) -> BreakerState | None:
        return await self._run(breakers.put, self._table, state)

    async def put_schedule(self, schedule: Schedule) -> None:
        await self._run(schedules.put, self._table, schedule)

    async def get_schedule(self, name: str) -> Schedule | None:
        return await self._run(schedules.get, self._table, name)

    async def delete_schedule(self, name: str) -> bool:
        return await self._run(schedules.delete, self._table, name)

    async def schedules(self) -> list[Schedule]:
        return await self._run(schedules.all_schedules, self._table)

    async def advance_schedule(self, name: str, expected_next: float, next_run: float) -> bool:
        return await self._run(schedules.advance, self._table, name, expected_next, next_run)

    # -- RateLimiter ------------------------------------------------------------------------
    async def acquire(self, key: str, rate: float, burst: int) -> float:
        return await self._run(schedules.acquire, self._table, self._clock, key, rate, burst)

    async def count_waiting(self, tenant: str) -> int:
        return await self._run(listing.count_waiting, self._table, tenant)

    # -- lifecycle --------------------------------------------------------------------------
    async def ping(self) -> None:
        """Readiness: the table answers DescribeTable and every queue's URL resolves."""
        await self._run(self._ping)

    def _ping(self) -> None:
        self._table.call("describe_table")
        for level in LEVELS:
            self._queues.url(level)

    async def close(self) -> None:
        """Close the clients; a later call makes new ones."""
        await asyncio.to_thread(self._clients.close)
