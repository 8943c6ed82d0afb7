"""Recurring schedules as a service: validate, store, and fire the due ones exactly once per due time."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from hexq.core.errors import (
    BackendUnavailable,
    Overloaded,
    QueueFull,
    ScheduleNameTaken,
    ScheduleNotFound,
    ValidationError,
)
from hexq.core.events import NO_EVENTS, Events
from hexq.core.model import JSON, Priority
from hexq.core.ports import ScheduleStore
from hexq.core.registry import Registry, check_name
from hexq.core.schedule import MAX_FIRE_TIME, CronNext, Schedule, next_fire
from hexq.core.services import SubmitRequest, TaskService

log = logging.getLogger("hexq.schedules")


class ScheduleService:
    """Schedules are due by the backend's clock (`store.now()`), never the caller's: two pollers on hosts
    whose clocks disagree still fire each due time once, on time."""

    def __init__(self, store: ScheduleStore, tasks: TaskService, registry: Registry, cron_next: CronNext,
                 events: Events = NO_EVENTS) -> None:
        self._store = store
        self._events = events
        self._tasks = tasks
        self._registry = registry
        self._cron_next = cron_next

    async def put(self, name: str, spec: str, type: str, payload: Mapping[str, JSON] | None = None, *,
                  queue: str = "default", priority: Priority = Priority.NORMAL, enabled: bool = True,
                  tenant: str | None = "default") -> Schedule:
        """Create or replace. Names are global: another tenant's name raises ScheduleNameTaken. Tenant None
        (a caller who sees every tenant) replaces a schedule keeping its tenant, and creates under "default"."""
        check_name(name, "name")
        check_name(queue, "queue")
        task_spec = self._registry.get(type)
        if not isinstance(spec, str):
            raise ValidationError("spec must be a string", field="spec")
        if not isinstance(enabled, bool):
            raise ValidationError("enabled must be a boolean", field="enabled")
        if payload is not None and not isinstance(payload, Mapping):
            raise ValidationError("payload must be a JSON object", field="payload")
        task_spec.check(dict(payload or {}))  # refused now (422), not logged at every firing
        first = next_fire(spec, await self._store.now(), self._cron_next)
        existing = await self._store.get_schedule(name)
        if tenant is not None and existing is not None and existing.tenant != tenant:
            raise ScheduleNameTaken(f"schedule name {name!r} is taken")
        owner = tenant or (existing.tenant if existing is not None else "default")
        schedule = Schedule(name, spec, type, dict(payload or {}), queue, priority, first, None, enabled, owner)
        await self._store.put_schedule(schedule)
        return schedule

    async def get(self, name: str, tenant: str | None = None) -> Schedule:
        schedule = await self._store.get_schedule(name)
        # Another tenant's schedule is reported exactly like a missing one (tenant None sees all).
        if schedule is None or (tenant is not None and schedule.tenant != tenant):
            raise ScheduleNotFound(f"no schedule {name!r}")
        return schedule

    async def delete(self, name: str, tenant: str | None = None) -> None:
        if tenant is not None:
            await self.get(name, tenant)
        if not await self._store.delete_schedule(name):
            raise ScheduleNotFound(f"no schedule {name!r}")

    async def all(self, tenant: str | None = None) -> list[Schedule]:
        return [s for s in await self._store.schedules() if tenant is None or s.tenant == tenant]

    async def fire_due(self) -> int:
        """Submit one task for each due schedule. Missed runs are coalesced into one firing.

        Two pollers may race: advance_schedule lets only one claim a due time, and the task's
        idempotency key (schedule name + due time) catches anything that still slips through.
        """
        now = await self._store.now()
        fired = 0
        for schedule in await self._store.schedules():
            try:
                if schedule.enabled and schedule.next_run <= now and await self._fire(schedule, now):
                    fired += 1
            except BackendUnavailable:
                raise  # the whole tick waits for the backend
            except Exception as exc:  # a record an older version or a hand edit left must not stop the others
                log.warning("schedule %r cannot fire: %s", getattr(schedule, "name", None), exc)
        return fired

    async def _fire(self, schedule: Schedule, now: float) -> bool:
        try:
            following = next_fire(schedule.spec, now, self._cron_next)
        except ValidationError as exc:
            # Due now, but no fire after this one in range (a cron year that has passed, an interval that
            # reaches past year 9999): fire this time, and leave it parked at the last representable time.
            log.warning("schedule %s fires for the last time: %s", schedule.name, exc)
            following = MAX_FIRE_TIME
        if not await self._store.advance_schedule(schedule.name, schedule.next_run, following):
            return False
        request = SubmitRequest(type=schedule.type, payload=schedule.payload, priority=schedule.priority,
                                queue=schedule.queue, tenant=schedule.tenant,
                                idempotency_key=f"schedule:{schedule.name}:{schedule.next_run:.3f}")
        try:
            await self._tasks.submit(request)
        except (ValidationError, QueueFull, Overloaded) as exc:  # e.g. the type was unregistered since: fire the others
            log.warning("schedule %s could not submit: %s", schedule.name, exc)
            return False
        self._events.schedule_fired(schedule.name, max(0.0, now - schedule.next_run))
        return True
