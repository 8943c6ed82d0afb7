"""LeaseReader on DynamoDB: a running task's item holds its lease (token, lease_expires, cancel_requested), and
the `by-due` index orders running tasks by lease expiry (a running task's `due` is its expiry)."""

from __future__ import annotations

from hexq.adapters.aws import items
from hexq.adapters.aws.items import Item
from hexq.adapters.aws.sweeps import due_keys
from hexq.adapters.aws.table import Table
from hexq.core.model import Lease, TaskStatus

_LAST_TIME = 253402300799.0  # 9999-12-31T23:59:59Z: past any lease expiry
TENANT_SCAN_PER_ITEM = 10  # a tenant's listing examines at most this many leases per one it may return


def lease(table: Table, task_id: str) -> Lease | None:
    if not items.valid_id(task_id):
        return None
    found = table.call("get_item", Key=items.task_key(task_id), ConsistentRead=True).get("Item")
    return None if found is None else _decoded(found)


def leases(table: Table, limit: int, tenant: str | None, scan: int) -> list[Lease]:
    """Soonest expiry first. The index holds keys only and is read eventually consistent, so each task is then
    read (consistent, about 1 RCU): at most `limit` reads without a tenant, at most min(scan, 10 * limit) with one."""
    if limit <= 0:
        return []
    bound = limit if tenant is None else min(scan, TENANT_SCAN_PER_ITEM * limit)
    found: list[Lease] = []
    for key in due_keys(table, TaskStatus.RUNNING, _LAST_TIME, bound):
        item = table.call("get_item", Key=key, ConsistentRead=True).get("Item")
        held = None if item is None else _decoded(item)
        if held is not None and (tenant is None or held.task.tenant == tenant):
            found.append(held)
            if len(found) >= limit:
                break
    return sorted(found, key=lambda held: held.expires_at)  # the index may lag a heartbeat


def _decoded(item: Item) -> Lease | None:
    task = items.decode_task(item)
    if task.status is not TaskStatus.RUNNING or "token" not in item or "lease_expires" not in item:
        return None
    return Lease(task, int(items.number(item, "token")), items.number(item, "lease_expires"),
                 items.cancel_requested(item))
