"""Leases as the API shows them: a running task's `lease` in GET /v1/tasks/{id}, and GET /v1/leases.

Read through the LeaseReader port, which only reads what claims and heartbeats already store. No backend stores
when the last heartbeat came: it is derived as the expiry minus the lease length (a heartbeat pushes the expiry
to now + lease length). The lease length is this API's HEXQ_LEASE; a worker started with another one makes the
figure off by the difference, so it is labelled an estimate, and never shown before the task started or after now.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import Response

from hexq.core.errors import ValidationError
from hexq.core.model import Lease, Task, TaskStatus
from hexq.core.ports import Backend
from hexq.functions import wire
from hexq.functions.wire import JSONOut

DEFAULT_LIMIT, MAX_LIMIT = 50, 500
Tenant = Callable[[Request], "str | None"]


def lease_to_dict(lease: Lease, now: float, lease_seconds: float) -> dict[str, Any]:
    task = lease.task
    heartbeat = min(max(lease.expires_at - lease_seconds, task.started_at or -math.inf), now)
    return {"task_id": task.id, "type": task.type, "queue": task.queue, "worker_id": task.worker_id,
            "token": lease.token, "expires_at": lease.expires_at, "seconds_left": lease.expires_at - now,
            "last_heartbeat": heartbeat, "lease_seconds": lease_seconds, "cancel_requested": lease.cancel_requested}


async def lease_view(request: Request, task: Task) -> dict[str, Any] | None:
    """The `lease` of GET /v1/tasks/{id}: one more read, for a running task only (None otherwise, or when the
    lease ended between the two reads)."""
    if task.status is not TaskStatus.RUNNING:
        return None
    backend = cast(Backend, request.app.state.backend)
    lease = await backend.lease(task.id)
    if lease is None:
        return None
    return lease_to_dict(lease, await backend.now(), cast(float, request.app.state.lease_seconds))


def leases_endpoint(tenant: Tenant) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        """GET /v1/leases?within=S&limit=N: running tasks' leases, soonest expiry first; with `within`, only those
        that expire within S seconds (expired ones the poller has not taken back yet included)."""
        within = wire.seconds_param(request.query_params.get("within") or None, "within", 0, 86_400)
        limit = _limit(request.query_params.get("limit"))
        backend = cast(Backend, request.app.state.backend)
        found, now = await backend.leases(limit, tenant=tenant(request)), await backend.now()
        lease_seconds = cast(float, request.app.state.lease_seconds)
        shown = [lease for lease in found if within is None or lease.expires_at - now <= within]
        return JSONOut({"now": now, "lease_seconds": lease_seconds,
                        "leases": [lease_to_dict(lease, now, lease_seconds) for lease in shown]})

    return endpoint


def _limit(raw: str | None) -> int:
    if not raw:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= MAX_LIMIT):
        raise ValidationError(f"limit must be an integer from 1 to {MAX_LIMIT}, not {raw[:64]!r}", field="limit")
    return int(raw)
