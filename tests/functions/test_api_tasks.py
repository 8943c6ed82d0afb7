"""The task endpoints' success paths: submit, bulk, get, list, cancel, stats, dead letters."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.testclient import TestClient

from hexq.core.clock import FakeClock
from hexq.functions.bootstrap import Container


def submit(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/tasks", json={"type": "echo", **body})
    assert response.status_code == 202, response.json()
    return response.json()  # type: ignore[no-any-return]


def backlog(client: TestClient) -> int:
    return client.get("/v1/stats").json()["backlog"]  # type: ignore[no-any-return]


def test_submit_answers_202_with_the_task_and_its_location(client: TestClient, clock: FakeClock) -> None:
    response = client.post("/v1/tasks", json={"type": "echo", "payload": {"n": 1}})

    assert response.status_code == 202
    task = response.json()
    assert response.headers["location"] == f"/v1/tasks/{task['id']}"
    assert "idempotent-replayed" not in response.headers
    assert task | {"id": "x"} == {
        "id": "x", "type": "echo", "payload": {"n": 1}, "queue": "default", "priority": "normal",
        "status": "queued", "attempts": 0, "max_attempts": 3, "timeout": 300.0, "run_at": clock.now(),
        "delay": 0.0, "created_at": clock.now(), "started_at": None, "finished_at": None, "worker_id": None,
        "result": None, "error": None, "traceback": None, "idempotency_key": None, "tenant": "default",
        "attempts_history": [],
    }


@pytest.mark.parametrize("number", [2**63 - 1, 2**64 - 1, 2**64, -(2**63) - 1, 10**40, -(10**300), 10**4000],
                         ids=["i64", "u64", "u64+1", "i64-1", "40 digits", "300 digits", "4000 digits"])
def test_a_payload_integer_of_any_size_comes_back_exactly(client: TestClient, number: int) -> None:
    raw = b'{"type": "echo", "payload": {"n": %d, "s": "x"}}' % number  # sent as text: no client rounds it
    response = client.post("/v1/tasks", content=raw)
    assert response.status_code == 202
    task_id = response.json()["id"]
    # Rendered exactly too (orjson refuses integers past 64 bits; the slow path keeps their digits).
    assert client.get(f"/v1/tasks/{task_id}").content.count(str(number).encode()) == 1


def test_text_in_any_script_and_escapes_round_trip(client: TestClient) -> None:
    raw = ('{"type": "echo", "payload": {"s": "é ☃ 😀 \\u0000 \\\\ \\"", "pair": "\\ud83d\\ude00", '
           '"n": [1.5, -0.0, 1e300]}}')
    response = client.post("/v1/tasks", content=raw.encode())
    assert response.status_code == 202
    payload = client.get(f"/v1/tasks/{response.json()['id']}").json()["payload"]
    assert payload == {"s": 'é ☃ 😀 \x00 \\ "', "pair": "😀", "n": [1.5, -0.0, 1e300]}


def test_submit_takes_every_documented_field(client: TestClient, clock: FakeClock) -> None:
    task = submit(client, payload={}, priority="critical", queue="mail", delay=60, max_attempts=5, timeout=2.5,
                  idempotency_key="k-1")

    assert (task["priority"], task["queue"], task["max_attempts"], task["timeout"]) == ("critical", "mail", 5, 2.5)
    assert (task["status"], task["run_at"], task["delay"], task["idempotency_key"]) == ("scheduled", clock.now() + 60,
                                                                                      60, "k-1")


def test_payload_defaults_to_an_empty_object_and_null_means_default(client: TestClient) -> None:
    task = submit(client, payload=None, priority=None, queue=None)

    assert (task["payload"], task["priority"], task["queue"]) == ({}, "normal", "default")


@pytest.mark.parametrize(("sent", "stored"), [(True, "high"), (False, "normal"), (0, "low"), (3, "critical"),
                                              ("HIGH", "high"), ("low", "low")])
def test_priority_accepts_names_levels_and_booleans(client: TestClient, sent: object, stored: str) -> None:
    assert submit(client, priority=sent)["priority"] == stored


@pytest.mark.parametrize("run_at", ["2023-11-14T23:13:20Z", "2023-11-14T23:13:20+00:00", "2023-11-15T00:13:20+01:00",
                                    "2023-11-14T23:13:20"])
def test_run_at_takes_an_iso_time_naive_meaning_utc(client: TestClient, clock: FakeClock, run_at: str) -> None:
    task = submit(client, run_at=run_at)

    assert (task["status"], task["run_at"]) == ("scheduled", clock.now() + 3600)


def test_run_at_takes_epoch_seconds(client: TestClient, clock: FakeClock) -> None:
    task = submit(client, run_at=clock.now() + 10)

    assert (task["status"], task["run_at"]) == ("scheduled", clock.now() + 10)


def test_same_idempotency_key_returns_the_original_task_with_200(client: TestClient) -> None:
    first = submit(client, payload={"a": 1}, idempotency_key="once")
    again = client.post("/v1/tasks", json={"type": "echo", "payload": {"a": 1}, "idempotency_key": "once"})

    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == f"/v1/tasks/{first['id']}"
    assert again.json() == first
    assert backlog(client) == 1


def test_idempotency_key_may_come_from_the_header(client: TestClient) -> None:
    headers = {"Idempotency-Key": "hdr"}
    first = client.post("/v1/tasks", json={"type": "echo"}, headers=headers)
    again = client.post("/v1/tasks", json={"type": "echo"}, headers=headers)

    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["idempotency_key"] == "hdr"
    assert again.json()["id"] == first.json()["id"]


def test_idempotency_header_and_body_key_may_agree(client: TestClient) -> None:
    response = client.post("/v1/tasks", json={"type": "echo", "idempotency_key": "k"}, headers={"Idempotency-Key": "k"})

    assert response.status_code == 202


def test_get_returns_the_task(client: TestClient) -> None:
    task = submit(client, payload={"x": "ü"})

    response = client.get(f"/v1/tasks/{task['id']}")

    assert (response.status_code, response.json()) == (200, task)


def test_list_pages_newest_first_until_the_cursor_runs_out(client: TestClient) -> None:
    ids = [submit(client, payload={"i": i})["id"] for i in range(5)]
    seen: list[str] = []
    url = "/v1/tasks?limit=2"
    while True:
        page = client.get(url).json()
        assert len(page["tasks"]) <= 2
        seen += [task["id"] for task in page["tasks"]]
        if page["next_cursor"] is None:
            break
        url = f"/v1/tasks?limit=2&cursor={page['next_cursor']}"

    assert seen == ids[::-1]


def test_list_filters_by_status_type_and_queue(client: TestClient) -> None:
    submit(client, queue="a")
    wanted = submit(client, queue="b")
    submit(client, queue="b", delay=30)

    page = client.get("/v1/tasks", params={"status": "queued", "type": "echo", "queue": "b"}).json()

    assert [task["id"] for task in page["tasks"]] == [wanted["id"]]
    assert page["next_cursor"] is None


def test_empty_filters_count_as_absent(client: TestClient) -> None:
    submit(client)

    assert len(client.get("/v1/tasks?status=&type=&queue=&limit=&cursor=").json()["tasks"]) == 1


def test_cancel_a_queued_task(client: TestClient, clock: FakeClock) -> None:
    task = submit(client)

    response = client.post(f"/v1/tasks/{task['id']}:cancel")

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["finished_at"]) == ("cancelled", clock.now())
    assert client.get(f"/v1/tasks/{task['id']}").json()["status"] == "cancelled"
    assert backlog(client) == 0


def test_stats_count_by_status_queue_and_priority(client: TestClient) -> None:
    submit(client, priority="high")
    submit(client, priority="high", queue="mail")
    submit(client, delay=10)

    stats = client.get("/v1/stats").json()

    assert stats["backlog"] == 2
    assert stats["by_status"] == {"scheduled": 1, "queued": 2, "running": 0, "succeeded": 0, "failed": 0,
                                  "dead": 0, "cancelled": 0}
    assert stats["queued"] == {"default": {"low": 0, "normal": 0, "high": 1, "critical": 0},
                               "mail": {"low": 0, "normal": 0, "high": 1, "critical": 0}}


def test_bulk_submit_answers_202_with_every_task_in_order(client: TestClient) -> None:
    body = {"tasks": [{"type": "echo", "payload": {"i": i}, "priority": i} for i in range(3)]}

    response = client.post("/v1/tasks:bulk", json=body)

    assert response.status_code == 202
    tasks = response.json()["tasks"]
    assert [(t["payload"], t["priority"]) for t in tasks] == [({"i": 0}, "low"), ({"i": 1}, "normal"),
                                                               ({"i": 2}, "high")]
    assert [t["id"] for t in client.get("/v1/tasks").json()["tasks"]] == [t["id"] for t in tasks][::-1]


def kill(container: Container, client: TestClient) -> dict[str, Any]:
    """A task that fails its only attempt: the worker dead-letters it."""
    task = submit(client, type="boom", max_attempts=1)
    report = asyncio.run(container.invocation("w").run())
    assert report.dead == 1
    return client.get(f"/v1/tasks/{task['id']}").json()  # type: ignore[no-any-return]


def test_dead_lists_dead_letters_and_replay_queues_them_again(client: TestClient, container: Container) -> None:
    submit(client)  # a live task, which the dead list must not show
    asyncio.run(container.invocation("w").run())
    dead = kill(container, client)
    assert (dead["status"], dead["attempts"], dead["error"]) == ("dead", 1, "RuntimeError: boom")

    listed = client.get("/v1/dead").json()
    assert ([t["id"] for t in listed["tasks"]], listed["next_cursor"]) == ([dead["id"]], None)

    response = client.post("/v1/dead:replay", json={"ids": [dead["id"]]})
    assert response.status_code == 200
    [replayed] = response.json()["replayed"]
    assert (replayed["id"], replayed["status"], replayed["attempts"]) == (dead["id"], "queued", 0)
    assert client.get("/v1/dead").json()["tasks"] == []
    assert backlog(client) == 1


def test_dead_list_pages(client: TestClient, container: Container) -> None:
    ids = [kill(container, client)["id"] for _ in range(3)]

    first = client.get("/v1/dead?limit=2").json()
    second = client.get(f"/v1/dead?limit=2&cursor={first['next_cursor']}").json()

    assert [t["id"] for t in first["tasks"] + second["tasks"]] == ids[::-1]
    assert second["next_cursor"] is None


def test_replay_skips_ids_that_are_unknown_or_not_dead(client: TestClient, container: Container) -> None:
    dead = kill(container, client)
    live = submit(client)

    response = client.post("/v1/dead:replay", json={"ids": ["nope", live["id"], dead["id"], dead["id"]]})

    assert response.status_code == 200
    assert [t["id"] for t in response.json()["replayed"]] == [dead["id"]]
    assert client.get(f"/v1/tasks/{live['id']}").json()["status"] == "queued"
