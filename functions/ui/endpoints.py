"""The /v1 endpoints the dashboard needs beside the task API: the live stream, the task types, and the caller.

They are API endpoints like any other (documented in functions/openapi.py, guarded by scope); they live
here because the dashboard is their first user. functions/api.py adds them with `api_routes(needs)`,
handing in its scope decorator so that every /v1 route is admitted by the same code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from hexq.core.auth import Scope
from hexq.core.ports import WorkerRegistry
from hexq.core.registry import Registry
from hexq.core.services import TaskService
from hexq.functions import wire
from hexq.functions.auth import Guard, presented_secret
from hexq.functions.errors import Unauthorized
from hexq.functions.ui.experiments import experiment_file, list_experiments
from hexq.functions.ui.leases import leases_endpoint
from hexq.functions.ui.live import Broadcaster, Snapshot
from hexq.functions.ui.why import reasons
from hexq.functions.wire import JSONOut

if TYPE_CHECKING:
    from hexq.functions.metrics.process import Metrics

Endpoint = Callable[[Request], Awaitable[Response]]
Needs = Callable[[Scope], Callable[[Endpoint], Endpoint]]
Tenant = Callable[[Request], "str | None"]
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}  # nginx and friends: do not buffer


def snapshot_reader(tasks: TaskService, workers: WorkerRegistry, now: Callable[[], float],
                    metrics: Metrics | None = None) -> Callable[[], Awaitable[Snapshot]]:
    """What one snapshot holds: GET /v1/stats, GET /v1/workers and GET /v1/histograms, read together."""

    async def read() -> Snapshot:
        stats = wire.stats_to_dict(await tasks.stats(), await tasks.pressures())
        return {"at": now(), "stats": stats, "workers": wire.workers_to_dict(await workers.workers())["workers"],
                "histograms": histograms_of(metrics)}

    return read


def histograms_of(metrics: Metrics | None) -> dict[str, Any]:
    """functions/metrics/summary.py's figures; {"metrics": false} with metrics off. Imported here, not at the
    top: `hexq serve` must choose prometheus_client's multiprocess mode before anything imports it."""
    if metrics is None:
        return {"metrics": False}
    from hexq.functions.metrics.summary import summary

    return summary(metrics)


def streams(request: Request) -> bool:
    """Whether to keep the response open. A client must ask for a stream (Accept: text/event-stream, as
    fetch and EventSource do here), and Lambda cannot stream: behind API Gateway the response is buffered
    until it ends, so there the answer is one snapshot and the page polls instead."""
    return "text/event-stream" in request.headers.get("accept", "") and "aws.event" not in request.scope


async def events(request: Request) -> Response:
    broadcaster = cast(Broadcaster, request.app.state.broadcaster)
    first = await broadcaster.latest()  # a backend that is down is a 503 here, before the stream starts
    body = broadcaster.stream(first, once=not streams(request))
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)


async def types(request: Request) -> Response:
    registry = cast(Registry, request.app.state.registry)
    return JSONOut({"types": [{"name": spec.name, "queue": spec.queue, "max_attempts": spec.max_attempts,
                               "timeout": spec.timeout, "rate": spec.rate or None,
                               "concurrency": spec.concurrency or None, "validates": spec.validate is not None}
                              for spec in registry]})


async def histograms(request: Request) -> Response:
    return JSONOut(histograms_of(cast("Metrics | None", request.app.state.metrics)))


def why(tenant: Tenant) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        """GET /v1/tasks/{id}/why: what may hold a queued or scheduled task back (functions/ui/why.py)."""
        state = request.app.state
        service = cast(TaskService, state.tasks)
        task = await service.get(request.path_params["id"], tenant(request))  # another tenant's: 404
        registry = cast(Registry, state.registry)
        spec = registry.get(task.type) if task.type in registry else None
        workers = await cast(WorkerRegistry, state.backend).workers()
        found = reasons(task, await service.stats(), workers, spec, tenant_cap=cast(int, state.tenant_cap),
                        now=cast(Callable[[], float], state.now)())
        return JSONOut({"id": task.id, "status": task.status.value, "reasons": found})

    return endpoint


async def whoami(request: Request) -> Response:
    """The caller's key (never its secret), or null on an API without keys. Any valid key may ask, whatever its
    scopes: the dashboard asks so that it shows only the actions the key may take."""
    guard = cast(Guard, request.app.state.guard)
    if not guard.keys:
        return JSONOut(None)
    secret = presented_secret(request.headers)
    key = guard.keys.authenticate(secret) if secret is not None else None
    if key is None:
        raise Unauthorized()
    await guard.admit(request.headers, next(iter(key.scopes)))  # the key's token bucket, as for any call
    return JSONOut({"name": key.name, "tenant": key.tenant, "scopes": sorted(key.scopes)})


def api_routes(needs: Needs, tenant: Tenant) -> list[Route]:
    """The routes, admitted by `needs`; `tenant` is the caller's tenant (None: every tenant)."""
    return [
        Route("/v1/tasks/{id:task_id}/why", needs(Scope.READ)(why(tenant)), methods=["GET"]),
        Route("/v1/events", needs(Scope.READ)(events), methods=["GET"]),
        Route("/v1/leases", needs(Scope.READ)(leases_endpoint(tenant)), methods=["GET"]),
        Route("/v1/types", needs(Scope.READ)(types), methods=["GET"]),
        Route("/v1/histograms", needs(Scope.READ)(histograms), methods=["GET"]),
        Route("/v1/whoami", whoami, methods=["GET"]),
        Route("/v1/experiments", needs(Scope.READ)(list_experiments), methods=["GET"]),
        Route("/v1/experiments/{name}/{run}/{file}", needs(Scope.READ)(experiment_file), methods=["GET"]),
    ]


def state(tasks: TaskService, workers: WorkerRegistry, registry: Registry, *, now: Callable[[], float],
          monotonic: Callable[[], float], metrics: Metrics | None = None, tenant_cap: int = 0,
          lease_seconds: float = 30.0, experiments_dir: str = "experiments") -> dict[str, Any]:
    """What these endpoints find on app.state (and tasks, backend and metrics, which functions/api.py sets)."""
    return {"broadcaster": Broadcaster(snapshot_reader(tasks, workers, now, metrics), monotonic=monotonic),
            "registry": registry, "now": now, "tenant_cap": tenant_cap, "lease_seconds": lease_seconds,
            "experiments_dir": Path(experiments_dir)}
