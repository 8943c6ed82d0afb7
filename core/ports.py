"""The hexagon's ports: small Protocols over domain types only.

One adapter object usually implements all of Broker, Sweeper, TaskStore, ScheduleStore, RateLimiter,
WorkerRegistry, QueueControl, BreakerStore and LeaseReader (`Backend`), so that a backend can keep each
operation atomic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from hexq.core.breaker import BreakerState
from hexq.core.model import Lease, Page, Settlement, Stats, Task, TaskQuery, TaskStatus, WorkerInfo
from hexq.core.schedule import Schedule


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back: what durations and deadlines are measured on."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` on this clock (a fake clock waits until it is advanced that far)."""
        ...


class Broker(Protocol):
    """Delivery of tasks to workers. At-least-once: a lease that is not settled in time expires."""

    async def enqueue(self, tasks: Sequence[Task], *, cap: int = 0) -> list[Task]:
        """Store new tasks (status queued or scheduled), all in one round trip.

        With `cap` > 0, a tenant may have at most `cap` waiting (queued or scheduled) tasks: past it,
        raise QueueFull for that tenant and store none of `tasks` (tasks answered by an earlier one add
        nothing). Memory, SQLite and Redis count and store in one atomic step; AWS counts, then stores,
        so submits racing each other can overshoot the cap by their number.

        Times are the backend's (hexq.core.clock.stamped with new=True): created now, due at
        max(run_at, now + delay), scheduled if that is later than now, else queued.
        A task whose (tenant, idempotency_key) is already stored is not added: the stored task
        is returned in its place. Returns one task per input, as stored, in order.
        """
        ...

    async def claim(self, queues: Sequence[str], n: int, *, lease_seconds: float, worker_id: str,
                    wait: float = 0.0) -> list[Lease]:
        """Lease up to `n` queued tasks from `queues`: strict priority, FIFO within a priority.

        Each claimed task is moved to running with attempts + 1, started_at, worker_id and a fresh
        fencing token. The tasks of paused queues (QueueControl) are left where they are. When none is
        ready, blocks up to `wait` seconds for one to arrive.
        """
        ...

    async def extend(self, leases: Sequence[Lease], lease_seconds: float) -> list[Lease | None]:
        """Heartbeat: push each lease's expiry `lease_seconds` past now. None where the token is stale.

        A renewed lease says whether the task's cancellation was requested (Lease.cancel_requested)."""
        ...

    async def settle(self, settlements: Sequence[Settlement]) -> list[bool]:
        """Write each task's new state if its lease token is still current; False where it is stale.

        The new state must be reachable from running (succeeded, scheduled for a retry, dead,
        or queued when released). Times are the backend's (hexq.core.clock.stamped): a retry is due at
        now + its delay (the backoff), a finished task finished now.
        """
        ...


class Sweeper(Protocol):
    """Housekeeping run by the poller. Every method is bounded by `limit` and safe to run concurrently."""

    async def promote_due(self, limit: int) -> int:
        """Move scheduled tasks whose run_at has come (by the backend's clock) to queued."""
        ...

    async def reclaim_expired(self, limit: int, lease_seconds: float) -> list[Lease]:
        """Take over running tasks whose lease expired: a fresh token, so the lost worker is fenced out.

        The caller settles each returned lease (retry or dead); if it dies first, the lease expires again.
        """
        ...

    async def purge_finished(self, older_than: float, limit: int) -> int:
        """Delete succeeded and cancelled tasks that finished more than `older_than` seconds ago."""
        ...

    async def backlog(self) -> int:
        """Queued tasks across every queue that is not paused: what the poller sizes worker invocations by,
        every tick (a paused queue's tasks would start workers that find nothing). Cheaper than stats()
        (which counts every status), and may be a lower bound past a scan limit."""
        ...


class TaskStore(Protocol):
    """Reads and out-of-lease writes (cancel, replay) of task state."""

    async def get(self, task_id: str) -> Task | None: ...

    async def query(self, query: TaskQuery) -> Page:
        """Newest first, at most query.limit items."""
        ...

    async def request_cancel(self, task_id: str) -> Task | None:
        """Ask the worker running this task to stop it: the next heartbeat of its lease (or a reclaim) says
        cancel_requested, and the task ends cancelled, settled under its lease like any outcome. Returns
        the task if it is running, else None (nothing is marked). A lease that ends forgets the request."""
        ...

    async def transition(self, task: Task, expected: TaskStatus) -> Task | None:
        """Compare-and-set: store `task` only if the stored status is still `expected`. Returns the task as
        stored (its times stamped by the backend's clock, hexq.core.clock.stamped), or None when it was not."""
        ...

    async def stats(self) -> Stats: ...

    async def count_waiting(self, tenant: str) -> int:
        """Tasks of `tenant` that are queued or scheduled (not yet claimed, not finished)."""
        ...


class ScheduleStore(Protocol):
    async def now(self) -> float:
        """The backend's clock (Redis: TIME), which decides every due time: schedules are fired by it."""
        ...

    async def put_schedule(self, schedule: Schedule) -> None: ...

    async def get_schedule(self, name: str) -> Schedule | None: ...

    async def delete_schedule(self, name: str) -> bool: ...

    async def schedules(self) -> list[Schedule]: ...

    async def advance_schedule(self, name: str, expected_next: float, next_run: float) -> bool:
        """Claim one firing: next_run `expected_next` -> `next_run`, last_run = `expected_next`.

        False if next_run is no longer `expected_next` (another poller fired it) or the schedule is gone.
        """
        ...


class RateLimiter(Protocol):
    """Token buckets shared by every process on the backend (the API's per-key request limits)."""

    async def acquire(self, key: str, rate: float, burst: int) -> float:
        """Take one token from bucket `key`, which holds up to `burst` tokens and refills `rate` a second.

        Returns 0.0 when the token was taken, otherwise the seconds until one will be there (nothing is
        taken then). A bucket not seen before starts full. Atomic across processes; time is the
        backend's clock (Redis: the server's TIME). Raises ValueError unless rate > 0 and burst >= 1,
        and BackendUnavailable when the backend cannot answer.
        """
        ...


@runtime_checkable
class TaskIds(Protocol):
    """Optional: backends whose task ids say where a task is stored (Redis spread over a cluster: the id names the
    task's shard), so reading a task by id needs no index. Other backends store core.model.new_task_id() as it is."""

    def task_ids(self, tasks: Sequence[Task]) -> list[str]:
        """The ids to store one request's new `tasks` under, in order (each task has a new_task_id() id, its queue,
        tenant and idempotency key set). Called once per request, before enqueue: a backend that places tasks
        round robin can keep one request together. Pure computation: no I/O."""
        ...


@runtime_checkable
class SettleAndClaim(Protocol):
    """Optional: backends that can settle finished tasks and lease new ones in one round trip (a worker
    that keeps its slots full then pays one call per batch instead of two). Others are called twice."""

    async def settle_and_claim(self, settlements: Sequence[Settlement], queues: Sequence[str], n: int, *,
                               lease_seconds: float, worker_id: str) -> tuple[list[bool], list[Lease]]:
        """Broker.settle(settlements), then Broker.claim(queues, n, ...) without waiting, as one operation:
        (applied per settlement, the new leases). The settles are applied before the claim looks."""
        ...


@runtime_checkable
class FinishWaiter(Protocol):
    """Optional: backends that can block until a task finishes without polling (Redis: BLPOP on a list
    the settling script pushes to). Others are polled with backoff (core.waiting)."""

    async def wait_finished(self, task_id: str, seconds: float) -> Task | None:
        """The task once it is finished (succeeded, dead or cancelled), or as it is when `seconds` have
        passed; None if there is no such task."""
        ...


class WorkerRegistry(Protocol):
    """Workers say they are alive, so that metrics and `GET /v1/workers` can count them on any backend."""

    async def beat(self, worker: WorkerInfo, ttl: float) -> None:
        """Register `worker` or refresh it: the backend stamps last_seen (and started_at the first time) on its
        own clock, stores `running`, and forgets the worker if no beat comes within `ttl` seconds."""

    async def leave(self, worker_id: str) -> None:
        """The worker stopped: forget it now (a missing id is not an error)."""

    async def workers(self) -> list[WorkerInfo]:
        """Workers whose last beat is within their ttl, on the backend's clock, ordered by id."""


class QueueControl(Protocol):
    """Pausing a queue: claims (and settle_and_claim) hand out none of its tasks until it is resumed. Everything
    else goes on: submits, delays and their promotion, retries, cancels, replays. Any valid queue name may be
    paused, one with no task yet included. Names are checked by the caller (hexq.core.registry.check_name)."""

    async def pause(self, queue: str) -> bool:
        """Stop claims from taking `queue`'s tasks. True if it was not paused before (idempotent)."""
        ...

    async def resume(self, queue: str) -> bool:
        """Make `queue`'s tasks claimable again at once, waking claimers that wait as a submit would. True if it
        was paused."""
        ...

    async def paused(self) -> frozenset[str]:
        """The paused queues."""
        ...


class BreakerStore(Protocol):
    """Circuit breaker state shared by every worker, host and Lambda invocation (hexq.core.breaker decides it;
    the store only keeps it). Each breaker is a versioned record written by compare-and-set."""

    async def breaker_states(self) -> tuple[float, list[BreakerState]]:
        """(the backend's clock now, every stored breaker with its version, ordered by name): one round trip, so
        that a worker on another host measures open and probe times on the clock that wrote them."""
        ...

    async def put_breaker(self, state: BreakerState) -> BreakerState | None:
        """Store `state` if the stored version is still state.version (0: none is stored). Returns it as stored,
        with the next version, or None when another writer got there first (read again, decide again)."""
        ...


class LeaseReader(Protocol):
    """Read-only view of the leases of running tasks, for the dashboard and GET /v1/leases. Nothing on the
    claim, heartbeat or settle path calls it, and it stores nothing: it reads what those already keep."""

    async def lease(self, task_id: str) -> Lease | None:
        """The current lease of a running task (token, expiry on the backend's clock, whether its cancellation
        was requested), or None when the task is missing or not running."""
        ...

    async def leases(self, limit: int, *, tenant: str | None = None) -> list[Lease]:
        """Up to `limit` leases of running tasks (of `tenant` only, unless None), soonest expiry first: expired
        ones the poller has not reclaimed yet come first. Backends may examine a bounded number of leases
        (LEASE_SCAN) when filtering by tenant, so a tenant's list can be short."""
        ...


LEASE_SCAN = 2000  # running tasks' leases one leases() call examines at most when it filters by tenant


class Backend(Broker, Sweeper, TaskStore, ScheduleStore, RateLimiter, WorkerRegistry, QueueControl, BreakerStore,
              LeaseReader, Protocol):
    """Everything a backend adapter provides, plus its lifecycle."""

    name: str

    async def ping(self) -> None:
        """Raise BackendUnavailable unless the backend can serve requests now."""
        ...

    async def close(self) -> None: ...


class Invoker(Protocol):
    """Starts worker invocations: in-process, a local process pool, or AWS Lambda."""

    async def trigger(self, n: int) -> int:
        """Start up to `n` invocations (fewer if at capacity). Returns how many were started. `n` may be 0:
        an invoker that keeps warm invocations waiting on the backend may start those then."""
        ...
