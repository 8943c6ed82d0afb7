"""Whatever a client sends, the answer is never a 5xx (a 500 would also raise into the test client), and
whatever the API accepted, reading it back answers 200."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from hexq.core.clock import FakeClock
from hexq.core.errors import ValidationError
from hexq.core.registry import Registry, TaskSpec
from hexq.core.schedule import MAX_FIRE_TIME, next_fire
from hexq.functions.bootstrap import cron_next

# Numbers past every range hexq has: float() of them overflows, and ints past 4300 digits do not even parse.
HUGE = st.sampled_from([10**400, -(10**400), 2**1024, -(2**1024), 2**63, 10**4000, 1.7976931348623157e308,
                        -1.7976931348623157e308, 5e-324, -0.0, 1e-300]) | st.integers(-(10**500), 10**500)
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
           | HUGE)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=16)
FIELDS = ("type", "payload", "priority", "queue", "delay", "run_at", "max_attempts", "timeout", "idempotency_key",
          "attempts", "status", "tasks", "ids", "spec", "enabled")
TYPES = ["echo", "measured", "picky", "boom", "nope", ""]
ISO_TIMES = ["2023-11-14T23:13:20Z", "2023-13-01", "", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59",
             "9999-12-31T23:59:59.999999", "+10000-01-01", "99999-01-01T00:00:00", "2023-11-14T23:13:20+99:00"]
# What a validate= function may raise; not BaseExceptions such as KeyboardInterrupt, which are not about a payload.
RAISES = {"value": ValueError, "overflow": OverflowError, "key": KeyError, "zero": ZeroDivisionError,
          "index": IndexError, "attribute": AttributeError, "runtime": RuntimeError, "recursion": RecursionError,
          "assertion": AssertionError, "os": OSError, "unicode": UnicodeError, "lookup": LookupError,
          "validation": ValidationError, "unprintable": None}
PAYLOADS = (st.fixed_dictionaries({}, optional={"n": HUGE | JSON_VALUES, "raise": st.sampled_from(list(RAISES)),
                                                "message": st.text(max_size=8) | st.just("x" * 5000)})
            | st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3) | JSON_VALUES)
DURATIONS = HUGE | st.floats() | st.integers() | JSON_VALUES
NEAR_VALID = {
    "type": st.sampled_from(TYPES) | JSON_VALUES,
    "payload": PAYLOADS,
    "priority": st.sampled_from(["low", "HIGH", "urgent", True, 0, 3, 4, -1]) | HUGE | JSON_VALUES,
    "delay": DURATIONS,
    "timeout": DURATIONS,
    "run_at": st.sampled_from(ISO_TIMES) | DURATIONS,
    "max_attempts": HUGE | JSON_VALUES,
}
# Submit-like objects: mostly the right field names with plausible or arbitrary values.
SUBMITS = st.fixed_dictionaries({}, optional={**NEAR_VALID, **{f: JSON_VALUES for f in FIELDS if f not in NEAR_VALID}})
JSON_TOKENS = st.text(alphabet='{}[]":,0123456789.eE+- \\utrflnsaNIy\ud800', max_size=64)
# A number as raw JSON text, so it can have more digits than json.dumps would write (Python stops at 4300).
RAW_NUMBERS = st.integers(1, 6000).map(lambda digits: '{"type": "measured", "payload": {"n": %s}}' % ("9" * digits))
BODIES = (JSON_VALUES.map(json.dumps) | SUBMITS.map(json.dumps)
          | st.lists(SUBMITS, max_size=3).map(lambda tasks: json.dumps({"tasks": tasks}))
          | JSON_TOKENS | st.binary(max_size=256) | RAW_NUMBERS)
ENDPOINTS = st.sampled_from([("POST", "/v1/tasks"), ("POST", "/v1/tasks"), ("POST", "/v1/tasks:bulk"),
                             ("POST", "/v1/dead:replay"), ("PUT", "/v1/schedules/fuzz")])

# Schedule specs around every edge: huge and tiny numbers, many parts, long digit strings, odd cron fields.
DIGITS = st.text("0123456789", min_size=1, max_size=30) | st.sampled_from(["9" * 400, "1" + "0" * 400, "0" * 300 + "1"])
NUMBER_TEXT = DIGITS | st.tuples(DIGITS, DIGITS).map(".".join)
PARTS = st.lists(st.tuples(NUMBER_TEXT, st.sampled_from(["ms", "s", "m", "h", "d"])).map("".join),
                 min_size=1, max_size=6).map("".join)
EVERY = (PARTS.map("@every {}".format)
         | st.tuples(PARTS, st.integers(1, 3000)).map(lambda parts: "@every " + parts[0] * parts[1]))
CRON_FIELDS = (st.sampled_from(["*", "*/5", "*/0", "0", "59", "60", "31", "30", "2", "29", "L", "1-0", "?", "H", "MON",
                                "5#3", "2020", "2099", "3000", "9" * 30, "9" * 5000])
               | st.integers(-5, 10**25).map(str))
CRON = (st.lists(CRON_FIELDS, min_size=4, max_size=8).map(" ".join)
        | st.sampled_from(["0 0 31 2 *", "0 0 30 2 *", "0 0 1 1 * 0 2020", "0 0 1 1 * 0 2099", "@yearly", "@reboot"]))
SPECS = EVERY | CRON | JSON_VALUES
SCHEDULES = st.fixed_dictionaries({"spec": SPECS}, optional={
    "type": st.sampled_from(TYPES), "payload": PAYLOADS, "priority": st.sampled_from(["low", 2]) | HUGE,
    "enabled": st.booleans() | JSON_VALUES, "queue": st.sampled_from(["q", "no spaces"])})

FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("this exception has no text")


def measured(payload: dict[str, Any]) -> None:
    """What a validator does with a client's number; each line raises something other than ValueError for some."""
    n = payload.get("n", 1)
    if isinstance(n, int | float) and not isinstance(n, bool):
        float(n)  # OverflowError past 1.8e308
        datetime.fromtimestamp(n, UTC)  # OverflowError, ValueError or OSError past year 9999
        math.exp(n)  # OverflowError past 709
        1 / n  # ZeroDivisionError


def picky(payload: dict[str, Any]) -> None:
    """Raises the exception the payload names, with the payload's message."""
    if "raise" in payload:
        kind = RAISES[payload["raise"]]
        raise Unprintable() if kind is None else kind(payload.get("message", ""))


@pytest.fixture
def registry(registry: Registry) -> Registry:
    registry.register(TaskSpec("measured", lambda payload: payload, validate=measured))
    registry.register(TaskSpec("picky", lambda payload: payload, validate=picky))
    return registry


def encode(body: str | bytes) -> bytes:
    return body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")


def assert_no_5xx(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert set(response.json()) == {"error", "message", "details"}


def assert_reads_answer(client: TestClient, path: str, response: Any, now: float) -> None:
    """After an accepted write, the reads that show it answer 200 (and so can never be stuck at 500)."""
    if response.status_code >= 300 or response.request.method not in {"POST", "PUT"}:
        return
    if path == "/v1/schedules/fuzz":
        assert client.get("/v1/schedules").status_code == 200
        schedule = client.get(path).json()
        assert now < schedule["next_run"] <= MAX_FIRE_TIME
        try:  # what the poller computes when it fires: a time in range, or a refusal, never a crash
            next_fire(schedule["spec"], schedule["next_run"], cron_next)
        except ValidationError:
            pass
        return
    tasks = response.json().get("tasks") or response.json().get("replayed") or [response.json()]
    for task in tasks:
        assert client.get(f"/v1/tasks/{task['id']}").status_code == 200
    for listing in ("/v1/tasks", "/v1/dead"):
        assert client.get(listing).status_code == 200


@FUZZ
@given(endpoint=ENDPOINTS, body=BODIES)
def test_no_body_makes_a_5xx(client: TestClient, clock: FakeClock, endpoint: tuple[str, str],
                             body: str | bytes) -> None:
    method, path = endpoint
    response = client.request(method, path, content=encode(body))

    assert_no_5xx(response)
    assert_reads_answer(client, path, response, clock.now())


@FUZZ
@given(body=SCHEDULES)
def test_no_schedule_makes_a_5xx(client: TestClient, clock: FakeClock, body: dict[str, Any]) -> None:
    response = client.put("/v1/schedules/fuzz", content=encode(json.dumps({"type": "echo", **body})))

    assert_no_5xx(response)
    assert_reads_answer(client, "/v1/schedules/fuzz", response, clock.now())


@FUZZ
@given(params=st.dictionaries(st.sampled_from(["status", "type", "queue", "limit", "cursor"]),
                              st.text(max_size=12) | DIGITS | st.sampled_from(["-" + "9" * 5000, "1e400", "inf"])),
       path=st.sampled_from(["/v1/tasks", "/v1/dead"]))
def test_no_query_makes_a_5xx(client: TestClient, params: dict[str, Any], path: str) -> None:
    assert client.get(path, params=params).status_code < 500


# -- the two faults of issue #9, as examples ------------------------------------------------------------
@pytest.mark.parametrize("n", [10**400, -(2**1024), 10**20, 1e15, 0, 710])
def test_a_validator_that_chokes_on_a_client_number_is_a_422(client: TestClient, n: int | float) -> None:
    response = client.post("/v1/tasks", content=json.dumps({"type": "measured", "payload": {"n": n}}))

    assert (response.status_code, response.json()["error"], response.json()["details"]) == (
        422, "validation_error", {"field": "payload"})
    assert response.json()["message"].startswith("measured: ")


@pytest.mark.parametrize("kind", list(RAISES))
def test_whatever_a_validator_raises_is_a_422_naming_the_payload(client: TestClient, kind: str) -> None:
    response = client.post("/v1/tasks", json={"type": "picky", "payload": {"raise": kind, "message": "no"}})

    assert (response.status_code, response.json()["error"], response.json()["details"]) == (
        422, "validation_error", {"field": "payload"})
    tasks = [{"type": "echo"}, {"type": "picky", "payload": {"raise": kind}}]
    bulk = client.post("/v1/tasks:bulk", json={"tasks": tasks})
    assert (bulk.status_code, bulk.json()["details"]) == (422, {"field": "tasks[1].payload"})


def test_an_every_spec_past_year_9999_is_refused_and_reads_stay_200(client: TestClient) -> None:
    response = client.put("/v1/schedules/far", json={"spec": "@every 99999999999999999d", "type": "echo"})

    assert (response.status_code, response.json()["details"]) == (422, {"field": "spec"})
    assert client.get("/v1/schedules").status_code == 200
    assert client.get("/v1/schedules/far").status_code == 404
