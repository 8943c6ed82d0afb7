"""The aws backend: DynamoDB holds the state, SQS delivers. `HEXQ_BACKEND=aws://?region=..&prefix=..`.

DynamoDB is the source of truth. One table `<prefix>-tasks` (items.py has the layout) holds every
task with its status, lease token and expiry; idempotency keys; schedules; rate-limit buckets; and a
counter item that hands out task sequence numbers and fencing tokens (UpdateItem ADD). Every state
change is a conditional write on status (and on the lease token while a task runs): that is the
fencing, exactly as the Lua scripts and SQLite transactions do it for the other backends.

SQS only says "this task may be ready": one standard queue per priority level
(`<prefix>-critical|high|normal|low`), a message body `{"task_id": ...}`. A claim receives from the
levels in strict order, critical first, then moves each named task queued -> running with a
conditional UpdateItem and a fresh token.

The one design choice: **a message is deleted as soon as its task is claimed.** The lease lives in
DynamoDB (`lease_expires`), heartbeats extend it there, and the poller's reclaim_expired recovers
expired leases through the `by-due` index, like every other backend. The alternative, the visibility
timeout as the lease with ChangeMessageVisibility as the heartbeat, was not taken: it would put the
fencing in SQS receipt handles (which cannot fence a late settle), make leases real-time SQS timers
that an injected clock cannot drive, and leave retries and releases to SQS redelivery order. So:

- a message whose task is not queued any more (cancelled, already claimed through a duplicate
  message, scheduled for a retry) is deleted and skipped: duplicate deliveries are claimed once;
- a message for a hexq queue the claimer does not serve (the SQS queues are per priority, shared
  by every hexq queue) stays hidden while the claimer drains that level, then is handed back
  (visibility 0), so one pass sees past it (at most MAX_ROUNDS receives per level). Handing back
  counts as a receive toward the queues' maxReceiveCount: workers with disjoint queue sets on one
  stack push such messages to the dead-letter queue, and the re-send below replaces them;
- delays live in DynamoDB only (status scheduled + run_at, D10): promote_due, and every claim
  first, moves due tasks to queued and sends their messages. No DelaySeconds, one code path;
- DynamoDB is written first, SQS second. A send that fails marks the task `due = 0`, and
  promote_due re-sends the message of any task queued for longer than `resend_after` (default
  15 min): failed sends, messages redriven to the dead-letter queue, lost messages. A duplicate
  this makes is harmless (first point);
- long polling: one claim pass short-polls critical, high and normal, then waits on low with
  WaitTimeSeconds = min(what is left of the claim's wait, long_poll <= 20 s). A task arriving on a
  higher level during that wait is taken by the next pass, at most one wait later (workers wait
  `idle_wait`, 1 s by default).

What SQS standard queues do not give, and the contract suite marks as capability gaps
(tests/contract/conftest.py): FIFO within a priority level (best-effort order; a released or
retried task gets a new message at the back rather than keeping its place), and exactly-once
receive (absorbed by the conditional claim). Priority across levels is strict as far as one
receive sees: a short poll samples a subset of SQS's servers, so it can miss a message that is there.

Listings read the `by-status` index (status, seq) newest first, bounded per call; stats count it
(bounded, STATS_SCAN per status). TTL (`expires_at`, the URL's `ttl`) deletes succeeded and
cancelled tasks after that many seconds, with their idempotency items; purge_finished deletes
explicitly. An item holds at most 400 KB: a task over the limit is refused with ValidationError
before anything is written or sent (messages carry only ids, so SQS's 256 KiB never applies).

boto3 is blocking: every call runs in asyncio.to_thread. Clients come from a factory (default:
boto3 sessions from the URL) and are made on first use.

Time. Neither DynamoDB nor SQS has a clock that a condition or an update expression can read, so the
times that decide behaviour (when a task is due, when a lease expires, when a result is purged, when
a schedule fires, token buckets) come from the clock of the hexq process that writes them
(hexq.core.clock.stamped, as every backend applies it). On Lambda that is the host's clock, which AWS keeps
synchronised (Amazon Time Sync Service); a hexq process off AWS that uses this backend must run NTP
(chrony): one whose clock is S seconds off makes the tasks it writes due S seconds early or late.
"""

from __future__ import annotations

from hexq.adapters.aws.backend import AwsBackend
from hexq.adapters.aws.config import AwsConfig, Clients, boto3_factory, parse

__all__ = ["AwsBackend", "AwsConfig", "Clients", "boto3_factory", "parse"]
