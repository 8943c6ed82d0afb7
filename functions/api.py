"""The HTTP API: `create_app(container) -> Starlette`. Each handler parses, makes one service call, renders.

Parsing lives in functions/wire.py and functions/body.py, error mapping in functions/errors.py,
the contract in functions/openapi.py. State hangs off `app.state`; nothing here is global.
Every /v1 handler names the scope it needs with `@_needs(...)`: API keys, tenants and rate limits
are checked in functions/auth.py before the handler runs (and before any body is read).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hexq.core.auth import ApiKey, Scope
from hexq.core.breakers import BreakerService
from hexq.core.bulk import BulkService
from hexq.core.errors import ValidationError
from hexq.core.events import Events
from hexq.core.model import TaskStatus
from hexq.core.ports import WorkerRegistry
from hexq.core.queues import QueueService
from hexq.core.schedules import ScheduleService
from hexq.core.services import TaskService
from hexq.functions import bulk_wire, openapi, ui, wire
from hexq.functions.auth import Guard, owner_of, tenant_of
from hexq.functions.body import read_json
from hexq.functions.bootstrap import Container
from hexq.functions.breaker_wire import breaker_view, breakers_to_dict
from hexq.functions.errors import EXCEPTION_HANDLERS, refusal
from hexq.functions.ui.leases import lease_view
from hexq.functions.wire import JSONOut, schedule_view, task_view

Endpoint = Callable[[Request], Awaitable[Response]]


class _TaskId(Convertor[str]):
    """A task id segment: no ':' so that `/v1/tasks/{id}:cancel` is its own route."""

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("task_id", _TaskId())


def _needs(scope: Scope, *, submits: bool = False) -> Callable[[Endpoint], Endpoint]:
    """The endpoint answers only callers whose key has `scope` (and a token left); see functions/auth.py.
    `submits`: a refusal here is a refused submit (hexq_submit_rejections_total)."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            guard = cast(Guard, request.app.state.guard)
            if guard.keys:  # an open API has nothing to check, and no key to keep
                with _refusals(request, submits):
                    request.scope[_KEY] = await guard.admit(request.headers, scope)
            return await endpoint(request)

        return guarded

    return decorate


_KEY = "hexq.api_key"  # where the admitted key is kept, in the request's scope


@contextlib.contextmanager
def _refusals(request: Request, counted: bool = True) -> Iterator[None]:
    """Count a submit refused at this edge, before the task service is called (key, rate limit, body, JSON,
    shape): the service counts what it refuses itself (hexq.core.services.rejection)."""
    try:
        yield
    except Exception as exc:
        reason = refusal(exc) if counted else None
        if reason is not None:
            cast(Events, request.app.state.events).rejected(reason)
        raise


def _key(request: Request) -> ApiKey | None:
    return cast(ApiKey | None, request.scope.get(_KEY))


def _tenant(request: Request) -> str | None:
    """The caller's tenant; None sees every tenant (no keys configured, or an operator key of tenant '*')."""
    return tenant_of(_key(request))


def _owner(request: Request) -> str:
    """The tenant that new tasks and schedules belong to."""
    return owner_of(_key(request))


def _tasks(request: Request) -> TaskService:
    return cast(TaskService, request.app.state.tasks)


def _schedules(request: Request) -> ScheduleService:
    return cast(ScheduleService, request.app.state.schedules)


async def _body(request: Request) -> dict[str, Any]:
    return await read_json(request, cast(int, request.app.state.body_limit))


# -- tasks --------------------------------------------------------------------------------------
@_needs(Scope.SUBMIT, submits=True)
async def submit_task(request: Request) -> Response:
    with _refusals(request):
        submit = wire.submit_request(await _body(request), tenant=_owner(request),
                                     header_key=request.headers.get("idempotency-key"))
    return wire.submitted_response(await _tasks(request).submit(submit))


@_needs(Scope.SUBMIT, submits=True)
async def submit_tasks(request: Request) -> Response:
    with _refusals(request):
        submits = wire.bulk_requests(await _body(request), tenant=_owner(request))
    submitted = await _tasks(request).submit_bulk(submits)
    return JSONOut({"tasks": [task_view(s.task) for s in submitted]}, status_code=202)


@_needs(Scope.READ)
async def list_tasks(request: Request) -> Response:
    page = await _tasks(request).query(wire.task_query(request.query_params, tenant=_tenant(request)))
    return JSONOut(wire.page_to_dict(page))


@_needs(Scope.READ)
async def get_task(request: Request) -> Response:
    tasks, task_id, tenant = _tasks(request), request.path_params["id"], _tenant(request)
    seconds = wire.seconds_param(request.query_params.get("wait") or None, "wait", 0, tasks.limits.max_wait,
                                 above_low=True)
    task = await (tasks.get(task_id, tenant) if seconds is None else tasks.wait(task_id, seconds, tenant))
    view = task_view(task)
    lease = await lease_view(request, task)  # a running task's only: one more read
    return JSONOut(view if lease is None else view | {"lease": lease})


@_needs(Scope.SUBMIT)
async def cancel_task(request: Request) -> Response:
    task = await _tasks(request).cancel(request.path_params["id"], _tenant(request))
    # 202: still running; its worker was asked to stop it and will settle it cancelled.
    return JSONOut(task_view(task), status_code=202 if task.status is TaskStatus.RUNNING else 200)


@_needs(Scope.SUBMIT)
async def cancel_matching(request: Request) -> Response:
    dry = bulk_wire.dry_run(request.query_params)
    where, limit, confirm = bulk_wire.bulk_request(await _body(request), dry=dry)
    result = await _bulk(request).cancel_matching(where, _tenant(request), limit=limit, confirm=confirm)
    return JSONOut(bulk_wire.bulk_result_to_dict(result, dry=dry))


def _bulk(request: Request) -> BulkService:
    return cast(BulkService, request.app.state.bulk)


@_needs(Scope.READ)
async def stats(request: Request) -> Response:
    tasks = _tasks(request)
    return JSONOut(wire.stats_to_dict(await tasks.stats(), await tasks.pressures()))


@_needs(Scope.READ)
async def list_workers(request: Request) -> Response:
    return JSONOut(wire.workers_to_dict(await cast(WorkerRegistry, request.app.state.backend).workers()))


# -- queues -------------------------------------------------------------------------------------
def _queues(request: Request) -> QueueService:
    return cast(QueueService, request.app.state.queues)


@_needs(Scope.READ)
async def list_queues(request: Request) -> Response:
    return JSONOut(wire.queues_to_dict(await _queues(request).queues()))


@_needs(Scope.ADMIN)
async def pause_queue(request: Request) -> Response:
    queue = request.path_params["queue"]
    return JSONOut({"queue": queue, "paused": True, "changed": await _queues(request).pause(queue)})


@_needs(Scope.ADMIN)
async def resume_queue(request: Request) -> Response:
    queue = request.path_params["queue"]
    return JSONOut({"queue": queue, "paused": False, "changed": await _queues(request).resume(queue)})


# -- circuit breakers ---------------------------------------------------------------------------
def _breakers(request: Request) -> BreakerService:
    return cast(BreakerService, request.app.state.breakers)


@_needs(Scope.READ)
async def list_breakers(request: Request) -> Response:
    return JSONOut(breakers_to_dict(await _breakers(request).breakers()))


@_needs(Scope.ADMIN)
async def open_breaker(request: Request) -> Response:
    return JSONOut(breaker_view(await _breakers(request).open(request.path_params["name"])))


@_needs(Scope.ADMIN)
async def close_breaker(request: Request) -> Response:
    return JSONOut(breaker_view(await _breakers(request).close(request.path_params["name"])))


# -- dead letters -------------------------------------------------------------------------------
@_needs(Scope.READ)
async def list_dead(request: Request) -> Response:
    query = wire.task_query(request.query_params, tenant=_tenant(request), status=TaskStatus.DEAD)
    return JSONOut(wire.page_to_dict(await _tasks(request).query(query)))


@_needs(Scope.ADMIN)
async def replay_dead(request: Request) -> Response:
    body = await _body(request)
    dry = bulk_wire.dry_run(request.query_params)  # checked whichever form the body takes
    if bulk_wire.is_filtered(body):  # every dead task matching a filter, throttled (core.bulk)
        where, limit, confirm = bulk_wire.bulk_request(body, dry=dry)
        result = await _bulk(request).replay_matching(where, _tenant(request), limit=limit, confirm=confirm)
        return JSONOut(bulk_wire.bulk_result_to_dict(result, dry=dry))
    if dry:
        raise ValidationError("dry_run counts what a filter matches; a list of ids needs none", field="dry_run")
    replayed = await _tasks(request).replay(wire.replay_ids(body), _tenant(request))
    return JSONOut({"replayed": [task_view(task) for task in replayed]})


# -- schedules ----------------------------------------------------------------------------------
@_needs(Scope.READ)
async def list_schedules(request: Request) -> Response:
    return JSONOut(wire.schedules_to_dict(await _schedules(request).all(_tenant(request))))


@_needs(Scope.READ)
async def get_schedule(request: Request) -> Response:
    return JSONOut(schedule_view(await _schedules(request).get(request.path_params["name"], _tenant(request))))


@_needs(Scope.ADMIN)
async def put_schedule(request: Request) -> Response:
    put = wire.schedule_put(await _body(request))
    schedule = await _schedules(request).put(
        request.path_params["name"], put.spec, put.type, put.payload, queue=put.queue, priority=put.priority,
        enabled=put.enabled, tenant=_tenant(request))
    return JSONOut(schedule_view(schedule))


@_needs(Scope.ADMIN)
async def delete_schedule(request: Request) -> Response:
    await _schedules(request).delete(request.path_params["name"], _tenant(request))
    return Response(status_code=204)


# -- meta ---------------------------------------------------------------------------------------
async def index(request: Request) -> Response:
    if ui.wants_html(request):  # a browser: the dashboard
        return ui.overview(request)
    links = {"openapi": "/openapi.json", "tasks": "/v1/tasks", "stats": "/v1/stats", "workers": "/v1/workers",
             "dead": "/v1/dead", "schedules": "/v1/schedules", "health": "/healthz", "ready": "/readyz",
             "metrics": "/metrics"}
    return JSONOut({"name": "hexq", "links": links})


async def healthz(request: Request) -> Response:
    return JSONOut({"status": "ok"})


async def readyz(request: Request) -> Response:
    await request.app.state.backend.ping()  # BackendUnavailable -> 503 with Retry-After
    return JSONOut({"status": "ready"})


async def openapi_json(request: Request) -> Response:
    return JSONOut(request.app.state.openapi)


@_needs(Scope.METRICS)
async def metrics(request: Request) -> Response:
    """Prometheus's scrape (functions/metrics/exposition.py): the backend's state, read now, and the counts."""
    from hexq.functions.metrics.exposition import scrape

    state = request.app.state
    body, content_type = await scrape(state.metrics, state.backend, state.known_queues, request.headers.get("accept"),
                                      state.backpressure)
    return Response(body, media_type=content_type)


def _route(path: str, **handlers: Endpoint) -> Route:
    """One Route per path, whatever its methods, so that a 405 lists all of them in Allow."""

    async def by_method(request: Request) -> Response:
        return await handlers["GET" if request.method == "HEAD" else request.method](request)

    name = "_".join(handler.__name__ for handler in handlers.values())
    return Route(path, by_method, methods=list(handlers), name=name)


def routes() -> list[Route]:
    # Matched in this order, and no two paths overlap: the busiest come first.
    return [
        _route("/v1/tasks", GET=list_tasks, POST=submit_task),
        _route("/v1/tasks/{id:task_id}", GET=get_task),
        _route("/v1/tasks:bulk", POST=submit_tasks),
        _route("/v1/tasks:cancel", POST=cancel_matching),
        _route("/", GET=index),
        _route("/healthz", GET=healthz),
        _route("/readyz", GET=readyz),
        _route("/openapi.json", GET=openapi_json),
        _route("/metrics", GET=metrics),
        _route("/v1/tasks/{id:task_id}:cancel", POST=cancel_task),
        _route("/v1/stats", GET=stats),
        _route("/v1/workers", GET=list_workers),
        _route("/v1/queues", GET=list_queues),
        _route("/v1/queues/{queue}:pause", POST=pause_queue),  # {queue} may hold ':': the match backtracks
        _route("/v1/queues/{queue}:resume", POST=resume_queue),
        _route("/v1/breakers", GET=list_breakers),
        _route("/v1/breakers/{name}:open", POST=open_breaker),  # {name} may hold ':': the match backtracks
        _route("/v1/breakers/{name}:close", POST=close_breaker),
        _route("/v1/dead", GET=list_dead),
        _route("/v1/dead:replay", POST=replay_dead),
        _route("/v1/schedules", GET=list_schedules),
        _route("/v1/schedules/{name}", GET=get_schedule, PUT=put_schedule, DELETE=delete_schedule),
        *ui.api_routes(_needs, _tenant),
    ]


def create_app(container: Container) -> Starlette:
    app = Starlette(routes=routes(), exception_handlers=EXCEPTION_HANDLERS, middleware=_middleware(container))
    app.state.tasks = container.tasks
    app.state.bulk = container.bulk
    app.state.events = container.events
    app.state.metrics = container.metrics
    app.state.known_queues = (*container.settings.queues, *container.registry.queues())  # for /metrics
    app.state.backpressure = container.settings.backpressure  # the caps, for /metrics
    app.state.schedules = container.schedules
    app.state.queues = container.queues
    app.state.breakers = container.breakers
    app.state.backend = container.backend
    app.state.body_limit = container.settings.body_limit
    app.state.openapi = openapi.document()
    settings = container.settings
    app.state.guard = Guard(container.keys, container.backend, settings.rate_per_second, settings.burst)
    ui.install(app, container)
    return app


def _middleware(container: Container) -> list[Middleware]:
    if container.metrics is None:
        return []
    from hexq.functions.metrics.http import HttpMetrics

    return [Middleware(HttpMetrics, instruments=container.metrics.http, values=container.metrics.values)]
