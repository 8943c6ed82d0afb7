"""The dashboard's pages: server-rendered shells (Jinja2) that one ES module (static/app.js) fills from /v1.

The pages carry no data: the API key lives in the browser (sessionStorage) and goes with each /v1 call the
module makes, so the server never sees a page request it could tell apart from an anonymous one. Every
page is served with a strict Content-Security-Policy: scripts and styles only from this origin, no inline
script, no inline style, no plugins, no framing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

HERE = Path(__file__).parent
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "X-Frame-Options": "DENY", "Cache-Control": "no-store", "Vary": "Accept"}
# (path under /ui, template, title)
PAGES = [("/", "overview", "Overview"), ("/tasks", "tasks", "Tasks"), ("/dead", "dead", "Dead letters"),
         ("/schedules", "schedules", "Schedules"), ("/workers", "workers", "Workers"), ("/submit", "submit", "Submit"),
         ("/experiments", "experiments", "Experiments")]
NAV = [(f"/ui{path}" if path != "/" else "/", name, title) for path, name, title in PAGES]

_templates = Jinja2Templates(directory=HERE / "templates")


def wants_html(request: Request) -> bool:
    """Content negotiation at `/`: HTML only for a client that names text/html above application/json
    (a browser); curl's */* and API clients keep the JSON list of links."""
    quality = _qualities(request.headers.get("accept", ""))
    return quality.get("text/html", 0.0) > 0 and quality.get("text/html", 0.0) >= quality.get("application/json", 0.0)


def _qualities(accept: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for part in accept.split(",")[:32]:
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        found[media.lower()] = max(q, found.get(media.lower(), 0.0))
    return found


def render(request: Request, name: str, **context: object) -> Response:
    root = request.scope.get("root_path", "").rstrip("/")
    stream = "0" if "aws.event" in request.scope else "1"  # behind API Gateway the page polls (see endpoints.py)
    response = _templates.TemplateResponse(request, f"{name}.html", {
        "page": name, "root": root, "stream": stream, "nav": NAV,
        "title": dict((n, t) for _, n, t in PAGES).get(name, "Task"), **context})
    response.headers.update(HEADERS)
    return response


def _page(name: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return render(request, name)

    return endpoint


def overview(request: Request) -> Response:
    return render(request, "overview")


async def _task(request: Request) -> Response:
    return render(request, "task", task_id=request.path_params["id"])


async def _home(request: Request) -> Response:
    return RedirectResponse(request.scope.get("root_path", "") + "/", status_code=307)


def page_routes() -> list[BaseRoute]:
    pages: list[BaseRoute] = [Route(f"/ui{path}", _page(name), methods=["GET"], name=f"ui_{name}")
                              for path, name, _ in PAGES]
    return [*pages,
            Route("/ui", _home, methods=["GET"]),
            Route("/ui/tasks/{id:task_id}", _task, methods=["GET"], name="ui_task"),
            Mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui_static")]
