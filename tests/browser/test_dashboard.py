"""The dashboard in a real browser (Debian's chromium through Playwright) against a real `hexq serve`.

Every page must load with no console error, no uncaught error and no CSP violation (Chromium reports
those on the console; the module also logs each `securitypolicyviolation`). Each page's full-page
screenshot is written to tests/browser/screenshots/.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browserkit import ARGS, CHROMIUM, HERE, Server, Watched, free_port, require_chromium, shoot
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright
from processes import stop, wait_healthy

from hexq.core.auth import Scope, entry, new_secret

pytestmark = [pytest.mark.slow, pytest.mark.browser]
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")  # not the session: Playwright's sync API holds an event loop on this thread,
def browser() -> Iterator[Browser]:  # which pytest-asyncio's tests after these could not run beside
    require_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def watched(browser: Browser) -> Iterator[Callable[..., Watched]]:
    contexts = []

    def open_page(*, width: int = 1280) -> Watched:
        context = browser.new_context(viewport={"width": width, "height": 800})
        contexts.append(context)
        page = context.new_page()
        seen = Watched(page)
        page.on("console", lambda m: seen.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: seen.errors.append(f"pageerror: {e}"))

        def dialog(d: Dialog) -> None:
            seen.dialogs.append(d.message)
            d.dismiss()

        page.on("dialog", dialog)
        return seen

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """server(**env) -> a running `hexq serve` on SQLite (or on `backend=URL`), stopped at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(backend: str | None = None, **env: str) -> Server:
        port = free_port()
        db = tmp_path / "hexq.db"
        log = tmp_path / f"serve-{len(started)}.log"
        environ = {**os.environ, "HEXQ_POLL_INTERVAL": "0.2", "HEXQ_IDLE_WAIT": "0.5",
                   "HEXQ_TASKS": "hexq.functions.examples,browser_tasks",
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])), **env}
        with log.open("wb") as sink:
            process = subprocess.Popen([sys.executable, "-m", "hexq.functions.cli", "serve", "--port", str(port),
                                        "--backend", backend or f"sqlite:///{db}"], cwd=tmp_path, env=environ,
                                       stdout=sink, stderr=subprocess.STDOUT)
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_healthy(process, url, lambda: log.read_text(errors="replace"))
        return Server(url, db, tmp_path)

    yield start
    for process in started:
        stop(process)


def ready(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready]", state="attached", timeout=10_000)


def wait_for(client: httpx.Client, task_id: str, *statuses: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        task: dict[str, Any] = client.get(f"/v1/tasks/{task_id}").json()
        if task["status"] in statuses or time.monotonic() > deadline:
            assert task["status"] in statuses, task
            return task
        time.sleep(0.1)


def dead_task(client: httpx.Client, **body: Any) -> str:
    task_id = str(client.post("/v1/tasks", json={"max_attempts": 1, **body}).json()["id"])
    wait_for(client, task_id, "dead")
    return task_id


def test_every_page_loads_clean_and_is_photographed(server: Callable[..., Server],
                                                     watched: Callable[..., Watched]) -> None:
    served = server()
    with served.client() as api:
        echo = api.post("/v1/tasks", json={"type": "echo", "payload": {"greeting": "hello", "n": 1}}).json()["id"]
        for _ in range(3):
            dead_task(api, type="fail", payload={"probability": 1})
        dead_task(api, type="until_fixed", payload={"flag": str(served.tmp / "flag")})
        api.post("/v1/tasks", json={"type": "sleep", "payload": {"seconds": 1}, "delay": 3600, "priority": "high"})
        api.put("/v1/schedules/nightly-report", json={"spec": "0 3 * * *", "type": "echo", "payload": {"r": 1}})
        api.put("/v1/schedules/heartbeat", json={"spec": "@every 1m", "type": "noop", "enabled": False})
        wait_for(api, echo, "succeeded")
        # Work in flight, so that the overview has rates, depths and busy workers to show.
        api.post("/v1/tasks:bulk", json={"tasks": [{"type": "sleep", "payload": {"seconds": 2},
                                                    "priority": ["low", "normal", "high"][i % 3]} for i in range(60)]})
    seen = watched()
    pages = {"overview": "/", "tasks": "/ui/tasks", "task": f"/ui/tasks/{echo}", "dead": "/ui/dead",
             "schedules": "/ui/schedules", "workers": "/ui/workers", "submit": "/ui/submit",
             "experiments": "/ui/experiments"}
    for name, path in pages.items():  # the overview first, while the sleeps run
        ready(seen.page, served.url + path)
        seen.page.wait_for_timeout(2500 if name == "overview" else 300)  # a few live updates
        shoot(seen.page, name)
    assert seen.errors == [] and seen.dialogs == []


def test_every_page_works_on_redis(server: Callable[..., Server], watched: Callable[..., Watched],
                                   redis_url: str) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    served = server(backend=redis_url)
    with served.client() as api:
        echo = api.post("/v1/tasks", json={"type": "echo", "payload": {"on": "redis"}}).json()["id"]
        dead = dead_task(api, type="fail", payload={"probability": 1})
        api.post("/v1/tasks", json={"type": "noop", "delay": 3600, "queue": "later"})
        wait_for(api, echo, "succeeded")
    seen = watched()
    shows = {"/": "later", "/ui/tasks": echo[:12], f"/ui/tasks/{echo}": '"redis"', "/ui/dead": dead[:12],
             "/ui/schedules": "", "/ui/workers": "", "/ui/submit": "echo"}
    for path, text in shows.items():
        ready(seen.page, served.url + path)
        if text:  # each page shows what the Redis backend holds
            expect(seen.page.locator("main")).to_contain_text(text, timeout=5_000)
    assert seen.errors == [] and seen.dialogs == []


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "polling"])
def test_a_task_submitted_through_the_api_shows_on_the_overview_within_2s(
        stream: bool, server: Callable[..., Server], watched: Callable[..., Watched]) -> None:
    served = server()
    seen = watched()
    ready(seen.page, served.url + ("/" if stream else "/?stream=0"))
    expect(seen.page.locator("#live-mode")).to_have_attribute("data-mode", "stream" if stream else "poll")
    expect(seen.page.locator("#fig-total")).to_have_text("0")

    with served.client() as api:
        api.post("/v1/tasks", json={"type": "echo", "delay": 3600})  # stays scheduled: a figure that holds still

    expect(seen.page.locator("#fig-total")).to_have_text("1", timeout=2000)
    expect(seen.page.locator("#depth tbody")).to_contain_text("default", timeout=2000)
    assert seen.errors == []


def test_replay_after_the_fix_and_edit_and_replay_change_state(server: Callable[..., Server],
                                                               watched: Callable[..., Watched]) -> None:
    served = server()
    flag = served.tmp / "flag"
    with served.client() as api:
        broken = dead_task(api, type="until_fixed", payload={"flag": str(flag)})
        failing = dead_task(api, type="fail", payload={"probability": 1})
    seen = watched()
    page = seen.page

    ready(page, f"{served.url}/ui/tasks/{broken}")
    expect(page.locator('dd[data-field="status"]')).to_have_text("dead")
    flag.write_text("deployed")  # the fix
    page.click("#act-replay")
    expect(page.locator('dd[data-field="status"]')).to_have_text("succeeded", timeout=15_000)

    ready(page, f"{served.url}/ui/tasks/{failing}")
    page.click("#act-edit")
    page.fill("#edit-payload", '{"probability": 0}')
    page.click("#edit-submit")
    page.wait_for_url(re.compile(r"/ui/tasks/(?!" + failing + ")"))
    expect(page.locator('dd[data-field="status"]')).to_have_text("succeeded", timeout=15_000)
    expect(page.locator("#payload")).to_contain_text('"probability": 0')
    with served.client() as api:
        assert api.get(f"/v1/tasks/{failing}").json()["status"] == "dead"  # the original stays as it was
    assert seen.errors == []


def test_bulk_replay_of_dead_letters_needs_the_typed_confirmation(server: Callable[..., Server],
                                                                   watched: Callable[..., Watched]) -> None:
    served = server()
    flag = served.tmp / "flag"
    with served.client() as api:
        ids = [dead_task(api, type="until_fixed", payload={"flag": str(flag), "i": i}) for i in range(3)]
    flag.write_text("deployed")
    seen = watched()
    page = seen.page
    ready(page, f"{served.url}/ui/dead")
    expect(page.locator(".group h3")).to_contain_text("3 ×")

    page.click("#replay-all")
    expect(page.locator("#confirm-ok")).to_be_disabled()
    page.fill("#confirm-input", "replay 2")
    expect(page.locator("#confirm-ok")).to_be_disabled()
    page.fill("#confirm-input", "replay 3")
    page.click("#confirm-ok")

    expect(page.locator("#notice")).to_contain_text("replayed 3 of 3")
    with served.client() as api:
        for task_id in ids:
            wait_for(api, task_id, "succeeded")
    assert seen.errors == []


def test_bulk_cancel_from_the_task_list(server: Callable[..., Server], watched: Callable[..., Watched]) -> None:
    served = server()
    with served.client() as api:
        ids = [api.post("/v1/tasks", json={"type": "echo", "delay": 3600}).json()["id"] for _ in range(2)]
    seen = watched()
    page = seen.page
    ready(page, f"{served.url}/ui/tasks?status=scheduled")
    page.check("#select-all")
    page.click("#bulk-cancel")
    page.fill("#confirm-input", "cancel 2")
    page.click("#confirm-ok")

    expect(page.locator("#notice")).to_contain_text("cancel: 2 of 2 done")
    with served.client() as api:
        assert {api.get(f"/v1/tasks/{i}").json()["status"] for i in ids} == {"cancelled"}
    assert seen.errors == []


_LOCAL_TIME = """(seconds) => {  // what a datetime-local input holds for this moment, in the browser's zone
  const d = new Date(seconds * 1000), p = (n) => String(n).padStart(2, "0");
  const day = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
  return `${day}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}"""


def test_the_priority_and_time_filters_narrow_the_list_on_the_server(server: Callable[..., Server],
                                                                    watched: Callable[..., Watched]) -> None:
    served = server()
    with served.client() as api:
        def later(priority: str) -> dict[str, Any]:
            return api.post("/v1/tasks", json={"type": "echo", "delay": 3600, "priority": priority}).json()

        old_high, old_low = later("high"), later("low")
        time.sleep(1.2)  # the time inputs hold whole seconds: the old tasks fall before the next second
        new_high, new_low = later("high"), later("low")
    seen = watched()
    page = seen.page
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/v1/tasks" in r.url else None)
    ready(page, f"{served.url}/ui/tasks")
    rows = page.locator("#tasks tbody tr")
    expect(rows).to_have_count(4)

    page.select_option("#filters select[name=priority]", "high")
    page.click("#filters button[type=submit]")
    page.wait_for_selector("body[data-ready]", state="attached")
    expect(rows).to_have_count(2)
    assert sorted(rows.evaluate_all("trs => trs.map(t => t.dataset.id)")) == sorted([old_high["id"], new_high["id"]])
    assert any("priority=high" in url for url in asked)  # filtered by the API, not on the page

    start = page.evaluate(_LOCAL_TIME, int(new_high["created_at"]))
    page.fill("#filters input[name=created_from]", start)
    page.click("#filters button[type=submit]")
    page.wait_for_selector("body[data-ready]", state="attached")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", new_high["id"])
    assert any("created_after=" in url for url in asked)

    page.fill("#filters input[name=created_to]", start)  # from = to: an empty window
    page.click("#filters button[type=submit]")
    page.wait_for_selector("body[data-ready]", state="attached")
    expect(page.locator("#tasks-empty")).to_be_visible()
    expect(rows).to_have_count(0)

    # "Cancel all matching" takes the same filter: only the new high task goes.
    page.fill("#filters input[name=created_to]", "")
    page.click("#filters button[type=submit]")
    page.wait_for_selector("body[data-ready]", state="attached")
    expect(rows).to_have_count(1)
    page.click("#cancel-matching")
    page.fill("#confirm-input", "cancel 1")
    page.click("#confirm-ok")
    expect(page.locator("#bulk-run-text")).to_contain_text("1 of 1")
    shoot(page, "tasks-priority-and-time")
    with served.client() as api:
        statuses = {t["id"]: api.get(f"/v1/tasks/{t['id']}").json()["status"]
                    for t in (old_high, old_low, new_high, new_low)}
    assert statuses == {old_high["id"]: "scheduled", old_low["id"]: "scheduled", new_high["id"]: "cancelled",
                        new_low["id"]: "scheduled"}
    assert seen.errors == []


def test_submit_shows_the_type_s_validation_error_inline_then_submits(server: Callable[..., Server],
                                                                       watched: Callable[..., Watched]) -> None:
    served = server()
    seen = watched()
    page = seen.page
    ready(page, f"{served.url}/ui/submit")
    page.select_option("select[name=type]", "fail")
    page.fill("textarea[name=payload]", '{"probability": 5}')
    page.click("#submit-form button[type=submit]")
    expect(page.locator("#submit-error")).to_contain_text("validation_error")
    expect(page.locator("textarea[name=payload]")).to_have_class(re.compile("invalid"))

    page.fill("textarea[name=payload]", '{"probability": 0}')
    page.click("#submit-form button[type=submit]")
    expect(page.locator("#submitted-link")).to_have_text(re.compile("^[0-9a-f]{32}$"))
    # The 422 is an answer the page expected; the browser still logs the failed request.
    assert [e for e in seen.errors if "status of 422" not in e] == []


def test_schedules_create_run_now_disable_and_delete(server: Callable[..., Server],
                                                      watched: Callable[..., Watched]) -> None:
    served = server()
    seen = watched()
    page = seen.page
    ready(page, f"{served.url}/ui/schedules")
    page.fill("input[name=name]", "hourly")
    page.fill("input[name=spec]", "@every 1h")
    page.select_option("#schedule-form select[name=type]", "echo")
    page.fill("#schedule-form textarea[name=payload]", '{"from": "schedule"}')
    page.click("#schedule-form button[type=submit]")
    row = page.locator('tr[data-name="hourly"]')
    expect(row).to_contain_text("@every 1h")

    row.locator("button.run").click()
    expect(page.locator("#notice")).to_contain_text("hourly ran now")
    row.locator("button.toggle").click()
    # The toggle reloads the page: wait for the reloaded one (its notice, then the enabled cell), or Delete could
    # open its dialog on the old page just before the reload takes it away ("no" alone also matches "now").
    expect(page.locator("#notice")).to_contain_text("hourly disabled")
    page.wait_for_selector("body[data-ready]", state="attached")
    expect(page.locator('tr[data-name="hourly"] td').nth(7)).to_have_text("no")
    page.locator('tr[data-name="hourly"] button.danger').click()
    page.fill("#confirm-input", "hourly")
    page.click("#confirm-ok")
    expect(page.locator("#schedules-empty")).to_be_visible()
    with served.client() as api:
        assert [t["payload"] for t in api.get("/v1/tasks?type=echo").json()["tasks"]] == [{"from": "schedule"}]
    assert seen.errors == []


def test_a_payload_is_shown_as_text_never_as_html(server: Callable[..., Server],
                                                  watched: Callable[..., Watched]) -> None:
    served = server()
    with served.client() as api:
        task_id = api.post("/v1/tasks", json={"type": "echo", "payload": {"html": XSS}}).json()["id"]
        wait_for(api, task_id, "succeeded")
    seen = watched()
    page = seen.page

    ready(page, f"{served.url}/ui/tasks/{task_id}")

    expect(page.locator("#payload")).to_contain_text(XSS)
    expect(page.locator("#result")).to_contain_text(XSS)
    assert page.locator("main img").count() == 0
    page.wait_for_timeout(500)
    assert seen.dialogs == [] and seen.errors == []


def test_a_read_key_sees_no_action_and_a_forged_post_is_refused(server: Callable[..., Server],
                                                                 watched: Callable[..., Watched]) -> None:
    secrets = {"reader": new_secret(), "boss": new_secret()}
    keys = ",".join([entry("reader", "*", [Scope.READ], secrets["reader"]),
                     entry("boss", "*", [Scope.ADMIN], secrets["boss"])])
    served = server(HEXQ_API_KEYS=keys)
    with served.client(secrets["boss"]) as api:
        dead = dead_task(api, type="fail", payload={"probability": 1})
        api.put("/v1/schedules/nightly", json={"spec": "0 3 * * *", "type": "echo"})
    seen = watched()
    page = seen.page

    page.goto(f"{served.url}/ui/dead")
    expect(page.locator("#login")).to_be_visible()  # the first /v1 call answered 401
    page.fill("#login-key", secrets["reader"])
    page.click("#login-form button")
    page.wait_for_selector("body[data-ready]", state="attached")
    expect(page.locator("#who")).to_contain_text("reader")
    expect(page.locator(".group")).to_have_count(1)
    for path in ["/ui/dead", f"/ui/tasks/{dead}", "/ui/tasks", "/ui/schedules", "/ui/submit", "/ui/workers", "/"]:
        ready(page, served.url + path)
        assert page.locator("main button:visible").filter(has_not_text="Filter").count() == 0, path  # reads only
        assert page.locator("main form#submit-form:visible, main #schedule-editor:visible").count() == 0, path

    forged = page.evaluate("""async (id) => {
        const key = sessionStorage.getItem("hexq.apiKey");
        const response = await fetch("/v1/dead:replay", {method: "POST", body: JSON.stringify({ids: [id]}),
            headers: {"Authorization": `Bearer ${key}`, "Content-Type": "application/json"}});
        return [response.status, (await response.json()).error];
    }""", dead)
    assert forged == [403, "forbidden"]

    page.click("#logout")  # the admin key sees the actions
    page.fill("#login-key", secrets["boss"])
    page.click("#login-form button")
    ready(page, f"{served.url}/ui/dead")
    expect(page.locator("button.replay-one")).to_have_count(1)
    # The browser logs the 401 before the key was given, and the forged POST's 403: both expected here.
    assert [e for e in seen.errors if not re.search(r"status of 40[13]", e)] == []


def test_pause_stops_a_queue_and_resume_drains_it(server: Callable[..., Server],
                                                  watched: Callable[..., Watched]) -> None:
    served = server()
    seen = watched()
    page = seen.page
    ready(page, served.url + "/")
    row = page.locator('#depth tr[data-queue="default"]').first  # a worker serves it: shown while empty
    row.locator("button.pause").click()
    expect(page.locator("#notice")).to_contain_text("queue default paused")
    expect(row.locator(".badge.paused")).to_be_visible(timeout=3000)  # the next snapshot says so too

    with served.client() as api:
        assert "default" in api.get("/v1/stats").json()["paused"]
        ids = [api.post("/v1/tasks", json={"type": "echo", "payload": {"i": i}}).json()["id"] for i in range(3)]
        time.sleep(3)  # workers poll every 0.2 s here: fifteen chances to claim one
        assert {api.get(f"/v1/tasks/{i}").json()["status"] for i in ids} == {"queued"}
    expect(page.locator('#depth tr[data-queue="default"][data-priority="normal"] td').nth(2)).to_have_text("3")

    resume = page.locator('#depth tr[data-queue="default"] button.pause').first
    expect(resume).to_have_text("Resume")
    resume.click()
    expect(page.locator("#notice")).to_contain_text("queue default resumed")
    with served.client() as api:
        for task_id in ids:
            wait_for(api, task_id, "succeeded", timeout=15)
    expect(page.locator("#fig-backlog")).to_have_text("0", timeout=3000)
    expect(page.locator('#depth tr[data-queue="default"] .badge.paused')).to_have_count(0)
    assert seen.errors == []


def test_the_overview_draws_queue_wait_and_duration_histograms_with_quantiles(server: Callable[..., Server],
                                                                             watched: Callable[..., Watched]) -> None:
    served = server()
    with served.client() as api:
        ids = [api.post("/v1/tasks", json={"type": "echo", "priority": p}).json()["id"] for p in ("high", "low") * 3]
        for task_id in ids:
            wait_for(api, task_id, "succeeded")
        # The worker processes counted these, and flush their counts every second: merged as /metrics does.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            figures = api.get("/v1/histograms").json()
            if figures["duration"]["series"].get("succeeded", {}).get("count") == 6:
                break
            time.sleep(0.2)
        scrape = api.get("/metrics").text
    assert figures["multiprocess"] is True, scrape[:2000]
    assert figures["queue_wait"]["series"]["high"]["count"] == 3, (figures, scrape[:3000])
    seen = watched()
    page = seen.page
    ready(page, served.url + "/")

    for series in ("high", "low"):
        chart = page.locator(f'#hist-wait .hist[data-series="{series}"]')
        expect(chart).to_contain_text("3 observed")
        expect(chart.locator('.q[data-q="p95"]')).not_to_have_text("p95 –")
    expect(page.locator('#hist-duration .hist[data-series="succeeded"]')).to_contain_text("6 observed")
    # Bar heights come through the CSSOM: drawn, and no CSP violation logged (the module logs each one).
    heights = page.locator("#hist-wait .bar").evaluate_all("bars => bars.map(b => b.getBoundingClientRect().height)")
    assert max(heights) > 10
    page.wait_for_timeout(1500)  # a redraw or two
    shoot(page, "overview-histograms")
    assert seen.errors == []


def test_the_overview_says_metrics_off(server: Callable[..., Server], watched: Callable[..., Watched]) -> None:
    served = server(HEXQ_METRICS="off")
    seen = watched()
    ready(seen.page, served.url + "/")
    expect(seen.page.locator("#hist-note")).to_contain_text("metrics off")
    assert seen.errors == []


def test_the_experiments_page_lists_finished_runs_and_shows_their_plots_and_report(
        server: Callable[..., Server], watched: Callable[..., Watched], tmp_path: Path) -> None:
    import shutil

    [run] = sorted((HERE.parent.parent / "docs" / "experiments" / "sqlite" / "priority").iterdir())[-1:]
    copy = tmp_path / "runs" / "priority" / run.name
    copy.mkdir(parents=True)
    for file in [*run.glob("*.png"), *(run / name for name in ("config.json", "summary.json", "report.md"))]:
        shutil.copy(file, copy / file.name)
    served = server(HEXQ_EXPERIMENTS_DIR=str(tmp_path / "runs"))
    seen = watched()

    ready(seen.page, served.url + "/ui/experiments")
    expect(seen.page.locator("#experiments tbody")).to_contain_text("short_p95_ratio")
    seen.page.click(f"button[data-run='priority/{run.name}']")
    expect(seen.page.locator("#experiment-report")).to_contain_text("priority", timeout=5_000)
    images = seen.page.locator("#experiment-figures img")
    expect(images).to_have_count(len(list(run.glob("*.png"))))
    seen.page.wait_for_function("[...document.querySelectorAll('#experiment-figures img')]"
                                ".every((i) => i.complete && i.naturalWidth > 0)")
    shoot(seen.page, "experiments")
    assert seen.errors == [] and seen.dialogs == []


def test_the_workers_page_shows_a_circuit_breaker_and_closes_it(server: Callable[..., Server],
                                                                 watched: Callable[..., Watched]) -> None:
    served = server()
    with served.client() as api:
        assert api.post("/v1/breakers/payments:open").json()["state"] == "open"
    seen = watched()
    ready(seen.page, served.url + "/ui/workers")
    row = seen.page.locator('#breakers tr[data-name="payments"]')
    expect(row).to_contain_text("open (forced)")

    row.locator("button[data-breaker=payments]").click()

    expect(row).to_contain_text("closed")
    with served.client() as api:
        [breaker] = [b for b in api.get("/v1/breakers").json()["breakers"] if b["name"] == "payments"]
    assert breaker["state"] == "closed" and seen.errors == []


def test_the_task_page_says_why_a_task_is_waiting(server: Callable[..., Server],
                                                   watched: Callable[..., Watched]) -> None:
    served = server()
    with served.client() as api:
        api.post("/v1/queues/default:pause")
        task_id = api.post("/v1/tasks", json={"type": "echo", "payload": {"html": XSS}}).json()["id"]
        later = api.post("/v1/tasks", json={"type": "echo", "delay": 3600}).json()["id"]
    seen = watched()
    page = seen.page

    ready(page, f"{served.url}/ui/tasks/{task_id}")
    expect(page.locator('#why-list li[data-kind="paused"]')).to_contain_text("queue 'default' is paused")
    expect(page.locator('#why-list li[data-kind="ahead"]')).to_contain_text("at most 0 queued ahead")
    expect(page.locator('#why-list li[data-kind="no_worker"]')).to_have_count(0)  # serve runs workers on it
    ready(page, f"{served.url}/ui/tasks/{later}")
    expect(page.locator('#why-list li[data-kind="delayed"]')).to_contain_text("due in 60 min")
    shoot(page, "task-why")

    with served.client() as api:
        api.post("/v1/queues/default:resume")
    ready(page, f"{served.url}/ui/tasks/{task_id}")
    expect(page.locator('dd[data-field="status"]')).to_have_text("succeeded", timeout=10_000)
    expect(page.locator("#why")).to_be_hidden()
    assert seen.errors == []


def test_the_workers_page_counts_recoveries_and_fencing_rejections(server: Callable[..., Server],
                                                                    watched: Callable[..., Watched]) -> None:
    served = server()
    seen = watched()
    page = seen.page
    ready(page, served.url + "/ui/workers")
    expect(page.locator("#fig-workers")).to_have_text(re.compile(r"^[1-9]"))
    expect(page.locator("#fig-recoveries")).to_have_text("0")
    expect(page.locator("#fig-fencing")).to_have_text("0")
    assert seen.errors == []


def test_the_task_page_draws_the_attempt_history_when_the_server_sends_it(server: Callable[..., Server],
                                                                          watched: Callable[..., Watched]) -> None:
    served = server()
    with served.client() as api:
        task_id = dead_task(api, type="fail", payload={"probability": 1})
        task = api.get(f"/v1/tasks/{task_id}").json()
    history = [{"number": 1, "worker_id": "w1", "token": "t1", "started_at": 100.0, "finished_at": 100.5,
                "outcome": "failed", "error": XSS, "traceback": "Traceback ...", "delay": 2.0},
               {"number": 2, "worker_id": "w2", "token": "t2", "started_at": 103.0, "finished_at": 103.2,
                "outcome": "dead", "error": "boom", "traceback": None, "delay": None}]
    seen = watched()
    page = seen.page
    # The field comes with another change: until then the test serves it, to check the drawing (as text).
    page.route(f"**/v1/tasks/{task_id}", lambda route: route.fulfill(json={**task, "attempts_history": history}))
    ready(page, f"{served.url}/ui/tasks/{task_id}")

    items = page.locator("#attempts-list li")
    expect(items).to_have_count(2)
    expect(items.first).to_contain_text("backoff 2.0 s")
    expect(items.first).to_contain_text(XSS)
    expect(items.nth(1)).to_contain_text("dead")
    assert page.locator("main img").count() == 0 and seen.dialogs == [] and seen.errors == []


# -- leases and chunked bulk actions --------------------------------------------------------------------
def countdown(page: Page, selector: str) -> float:
    """Seconds a countdown shows ("12.3 s"), negative once it says expired."""
    text = page.locator(selector).inner_text()
    seconds = float(re.findall(r"[\d.]+", text)[0])
    return -seconds if text.startswith("expired") else seconds


def test_the_task_page_counts_down_a_running_task_s_lease(server: Callable[..., Server],
                                                          watched: Callable[..., Watched]) -> None:
    served = server(HEXQ_LEASE="20")
    with served.client() as api:
        task_id = api.post("/v1/tasks", json={"type": "sleep", "payload": {"seconds": 30}}).json()["id"]
        running = wait_for(api, task_id, "running")
    seen = watched()
    page = seen.page
    ready(page, f"{served.url}/ui/tasks/{task_id}")

    expect(page.locator("#lease")).to_be_visible()
    expect(page.locator("#lease-worker")).to_have_text(running["worker_id"])
    expect(page.locator("#lease-beat")).to_contain_text("ago")
    first = countdown(page, "#lease-left")
    page.wait_for_timeout(1200)
    later = countdown(page, "#lease-left")
    assert 0 < later < first <= 20  # it ticks down between reads (a heartbeat every ~6.7 s pushes it back up)
    shoot(page, "task-lease")
    assert seen.errors == []


def test_the_workers_page_lists_a_lease_near_expiry(server: Callable[..., Server],
                                                    watched: Callable[..., Watched]) -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from hexq.adapters.sqlite import SQLiteBackend

    served = server()  # workers serve only the default queue, and renew their leases
    with served.client() as api:
        task_id = api.post("/v1/tasks", json={"type": "echo", "queue": "stuck"}).json()["id"]

    async def hang() -> None:  # a worker that claims and then never renews: its lease runs out
        backend = SQLiteBackend(str(served.db))
        await backend.claim(["stuck"], 1, lease_seconds=12, worker_id="hung-worker")
        await backend.close()

    with ThreadPoolExecutor(1) as thread:  # this thread's event loop is Playwright's
        thread.submit(asyncio.run, hang()).result()
    seen = watched()
    page = seen.page
    ready(page, f"{served.url}/ui/workers")

    row = page.locator(f"#leases tr[data-id='{task_id}']")
    expect(row).to_contain_text("hung-worker")
    assert 0 < countdown(page, f"#leases tr[data-id='{task_id}'] td.countdown") <= 12
    expect(page.locator("#leases-empty")).to_be_hidden()
    shoot(page, "workers-leases")
    assert seen.errors == []


def test_a_chunked_replay_shows_progress_and_replays_every_match(server: Callable[..., Server],
                                                                 watched: Callable[..., Watched]) -> None:
    served = server()
    flag = served.tmp / "flag"
    with served.client() as api:
        for start in range(0, 1100, 550):
            api.post("/v1/tasks:bulk", json={"tasks": [
                {"type": "until_fixed", "max_attempts": 1, "payload": {"flag": str(flag), "batch": "b1", "i": i}}
                for i in range(start, start + 550)]})
        others = [dead_task(api, type="until_fixed", payload={"flag": str(flag), "batch": "b2"}) for _ in range(2)]
        deadline = time.monotonic() + 180
        while (dead := api.get("/v1/stats").json()["by_status"]["dead"]) < 1102:
            assert time.monotonic() < deadline, f"only {dead} of the 1,102 tasks died"
            time.sleep(1)
    flag.write_text("deployed")
    seen = watched()
    page = seen.page
    ready(page, f"{served.url}/ui/dead?search=%22batch%22%3A%22b1%22")
    page.evaluate("""() => {  // every text the progress line shows, however briefly
        window.progressSeen = [];
        new MutationObserver(() => window.progressSeen.push(document.querySelector("#bulk-run-text").textContent))
            .observe(document.querySelector("#bulk-run-text"), {childList: true, characterData: true, subtree: true});
    }""")

    page.click("#replay-matching")
    expect(page.locator("#confirm-text")).to_contain_text("1,100 matching")
    page.fill("#confirm-input", "replay 1100")
    page.click("#confirm-ok")

    expect(page.locator("#bulk-run-text")).to_have_text("replayed 1,100 of 1,100", timeout=60_000)
    shown = page.evaluate("window.progressSeen")
    assert "replayed 500 of 1,100…" in shown and "replayed 1,000 of 1,100…" in shown, shown
    with served.client() as api:
        dry = api.post("/v1/dead:replay?dry_run=1", json={"filter": {"search": '"batch":"b1"'}}).json()
        assert dry["matched"] == 0
        assert {api.get(f"/v1/tasks/{i}").json()["status"] for i in others} == {"dead"}  # not matched: untouched
    page.screenshot(path=str(HERE / "screenshots" / "dead-letters-replayed.png"))  # the top: the progress
    assert seen.errors == []


# -- through the Lambda API handler -----------------------------------------------------------------------
@pytest.fixture
def lambda_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """lambda_env(backend URL): the HEXQ_* environment template.yaml gives both functions, open API included."""

    def set_env(backend: str) -> None:
        for name in [name for name in os.environ if name.startswith("HEXQ_")]:
            monkeypatch.delenv(name)
        for name, value in {"HEXQ_BACKEND": backend, "HEXQ_ALLOW_OPEN_API": "true", "HEXQ_IDLE_WAIT": "0.05",
                            "HEXQ_TASKS": "hexq.functions.examples,browser_tasks"}.items():
            monkeypatch.setenv(name, value)

    return set_env


class LambdaWorker:
    """The Lambda worker function, on a thread of its own (this one's event loop is Playwright's)."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._thread = ThreadPoolExecutor(1)
        self._module: Any = None

    def invoke(self) -> dict[str, Any]:
        return self._thread.submit(self._invoke).result()  # type: ignore[no-any-return]

    def _invoke(self) -> dict[str, Any]:
        from lambda_bridge import FakeContext

        if self._module is None:
            import importlib

            sys.modules.pop("hexq.functions.lambda_worker", None)
            self._module = importlib.import_module("hexq.functions.lambda_worker")
        return self._module.handler({}, FakeContext(remaining_ms=60_000))  # type: ignore[no-any-return]

    def claim(self, backend: str, queue: str, lease: float) -> None:
        """A worker that claims one task of `queue` and then never renews its lease."""
        import asyncio

        from hexq.functions.bootstrap import bootstrap
        from hexq.functions.settings import Settings

        async def hang() -> None:
            container = bootstrap(Settings(backend_url=backend, task_modules=()))
            await container.backend.claim([queue], 1, lease_seconds=lease, worker_id="hung-worker")
            await container.backend.close()

        self._thread.submit(lambda: asyncio.run(hang())).result()

    def close(self) -> None:
        if self._module is not None:
            self._thread.submit(self._module.handler.close).result()
            sys.modules.pop("hexq.functions.lambda_worker", None)
        self._thread.shutdown()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_every_page_works_through_the_lambda_api_handler(backend: str, request: pytest.FixtureRequest,
                                                         tmp_path: Path, lambda_env: Callable[[str], None],
                                                         watched: Callable[..., Watched]) -> None:
    from lambda_bridge import LambdaBridge

    url = f"sqlite:///{tmp_path / 'hexq.db'}"
    if backend == "redis":
        import redis

        url = request.getfixturevalue("redis_url")
        redis.Redis.from_url(url).flushdb()
    lambda_env(url)
    bridge, worker = LambdaBridge(), LambdaWorker()
    base = bridge.start()
    try:
        flag = tmp_path / "flag"
        with httpx.Client(base_url=base, trust_env=False, timeout=30) as api:
            echo = api.post("/v1/tasks", json={"type": "echo", "payload": {"hello": "lambda"}}).json()["id"]
            dead = [api.post("/v1/tasks", json={"type": "until_fixed", "max_attempts": 1,
                                                "payload": {"flag": str(flag), "i": i}}).json()["id"] for i in range(3)]
            worker.invoke()
            waiting = api.post("/v1/tasks", json={"type": "echo", "delay": 3600}).json()["id"]
            held = api.post("/v1/tasks", json={"type": "echo", "queue": "held"}).json()["id"]
            api.put("/v1/schedules/nightly", json={"spec": "0 3 * * *", "type": "echo"})
            assert api.get(f"/v1/tasks/{echo}").json()["status"] == "succeeded"
        worker.claim(url, "held", lease=12)
        seen = watched()
        page = seen.page

        ready(page, f"{base}/")
        expect(page.locator("#live-mode")).to_contain_text("polling")  # API Gateway buffers: one snapshot, then polls
        for path in ["/ui/tasks", f"/ui/tasks/{echo}", f"/ui/tasks/{waiting}", "/ui/schedules", "/ui/submit"]:
            ready(page, base + path)
        ready(page, f"{base}/ui/tasks/{held}")
        expect(page.locator("#lease-worker")).to_have_text("hung-worker")
        assert 0 < countdown(page, "#lease-left") <= 12
        ready(page, f"{base}/ui/workers")
        expect(page.locator(f"#leases tr[data-id='{held}']")).to_contain_text("hung-worker")
        page.wait_for_timeout(1600)  # one more poll of the live figures

        flag.write_text("deployed")
        ready(page, f"{base}/ui/dead")
        page.click("#replay-matching")
        page.fill("#confirm-input", "replay 3")
        page.click("#confirm-ok")
        expect(page.locator("#bulk-run-text")).to_have_text("replayed 3 of 3", timeout=20_000)
        worker.invoke()
        with httpx.Client(base_url=base, trust_env=False, timeout=30) as api:
            assert {api.get(f"/v1/tasks/{i}").json()["status"] for i in dead} == {"succeeded"}
        assert seen.errors == [] and seen.dialogs == []
    finally:
        bridge.stop()
        worker.close()
    called = {(method, re.sub(r"[0-9a-f]{32}", "{id}", path.partition("?")[0])) for method, path, _ in bridge.seen}
    assert {("GET", "/v1/whoami"), ("GET", "/v1/workers"), ("GET", "/v1/stats"), ("GET", "/v1/tasks"),
            ("GET", "/v1/tasks/{id}"), ("GET", "/v1/tasks/{id}/why"), ("GET", "/v1/leases"), ("GET", "/v1/dead"),
            ("GET", "/v1/schedules"), ("GET", "/v1/types"), ("GET", "/v1/histograms"), ("POST", "/v1/dead:replay"),
            ("GET", "/ui/static/app.js")} <= called
    refused = [(method, path, status) for method, path, status in bridge.seen if status >= 400]
    assert refused == []
