"""GET /v1/experiments and a run's files, for the dashboard's Experiments page: only finished runs, only files
inside HEXQ_EXPERIMENTS_DIR, and the read scope."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from hexq.core.auth import Scope, entry, new_secret
from hexq.functions.bootstrap import Container

ClientFactory = Callable[..., TestClient]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def finished_run(out: Path, name: str, stamp: str, started: str, headline: dict[str, float]) -> Path:
    directory = out / name / stamp
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"started_at": started, "backend_kind": "sqlite",
                                                       "quick": True}))
    (directory / "summary.json").write_text(json.dumps({"complete": True, "headline": [headline]}))
    (directory / "report.md").write_text("# priority\n<img src=x onerror=alert(1)>\n")
    (directory / "priority_burst.png").write_bytes(PNG)
    return directory


@pytest.fixture
def out(tmp_path: Path) -> Path:
    directory = tmp_path / "experiments"
    finished_run(directory, "priority", "20261201T100000Z", "2026-12-01T10:00:00+00:00", {"short_p95_ratio": 0.05})
    finished_run(directory, "scaling", "20261201T110000Z", "2026-12-01T11:00:00+00:00", {"io_x10_per_s": 97.7})
    (directory / "load" / "20261201T120000Z").mkdir(parents=True)  # still running: no summary.json yet
    (tmp_path / "secret.md").write_text("not an experiment")
    return directory


@pytest.fixture
def served(out: Path, make_container: Callable[..., Container], make_client: ClientFactory) -> TestClient:
    return make_client(make_container(experiments_dir=str(out)))


def test_lists_finished_runs_newest_first_with_their_file_paths(served: TestClient) -> None:
    answer = served.get("/v1/experiments").json()

    assert [(r["name"], r["run"]) for r in answer["runs"]] == [("scaling", "20261201T110000Z"),
                                                               ("priority", "20261201T100000Z")]
    priority = answer["runs"][1]
    assert priority["headline"] == {"short_p95_ratio": 0.05} and priority["backend"] == "sqlite"
    assert priority["report"] == "/v1/experiments/priority/20261201T100000Z/report.md"
    assert priority["figures"] == ["/v1/experiments/priority/20261201T100000Z/priority_burst.png"]


def test_serves_a_runs_report_as_text_and_its_figures_as_png(served: TestClient) -> None:
    report = served.get("/v1/experiments/priority/20261201T100000Z/report.md")
    figure = served.get("/v1/experiments/priority/20261201T100000Z/priority_burst.png")

    assert report.status_code == 200 and report.headers["content-type"].startswith("text/plain")
    assert "<img src=x" in report.text and report.headers["x-content-type-options"] == "nosniff"
    assert figure.status_code == 200 and figure.headers["content-type"] == "image/png" and figure.content == PNG


@pytest.mark.parametrize("path", [
    "priority/20261201T100000Z/missing.png", "priority/20261201T100000Z/..%2F..%2Fsecret.md", "..%2F..%2F/x/secret.md",
    "priority/20261201T100000Z/config.py", "priority/.hidden/report.md", "nope/20261201T100000Z/report.md"])
def test_anything_else_is_404_never_a_file_outside(served: TestClient, path: str) -> None:
    answer = served.get(f"/v1/experiments/{path}")

    assert answer.status_code == 404 and answer.json()["error"] == "not_found"


def test_a_symlink_out_of_the_directory_is_not_followed(served: TestClient, out: Path, tmp_path: Path) -> None:
    (out / "priority" / "20261201T100000Z" / "leak.md").symlink_to(tmp_path / "secret.md")

    assert served.get("/v1/experiments/priority/20261201T100000Z/leak.md").status_code == 404


def test_no_directory_lists_nothing(make_container: Callable[..., Container], make_client: ClientFactory,
                                    tmp_path: Path) -> None:
    client = make_client(make_container(experiments_dir=str(tmp_path / "none")))

    assert client.get("/v1/experiments").json()["runs"] == []


def test_needs_the_read_scope(out: Path, make_container: Callable[..., Container], make_client: ClientFactory) -> None:
    reader, submitter = new_secret(), new_secret()
    keys = ",".join([entry("r", "t", [Scope.READ], reader), entry("s", "t", [Scope.SUBMIT], submitter)])
    client = make_client(make_container(experiments_dir=str(out), api_keys=keys))
    path = "/v1/experiments/priority/20261201T100000Z/report.md"

    assert client.get("/v1/experiments").status_code == 401
    assert client.get(path, headers={"Authorization": f"Bearer {submitter}"}).status_code == 403
    assert client.get(path, headers={"Authorization": f"Bearer {reader}"}).status_code == 200
