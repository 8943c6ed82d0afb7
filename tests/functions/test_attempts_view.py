"""The task view's attempts_history: the stored attempts, then the running or succeeded one shown from the
task's own fields (a success is never stored); and the codec reads records from before there was a history."""

from __future__ import annotations

from hexq.core.codec import task_from_dict, task_to_dict
from hexq.core.model import Attempt, AttemptOutcome, Task, TaskStatus
from hexq.functions.wire import task_view

RETRIED = Attempt(1, AttemptOutcome.RETRIED, "w1", 7, 100.0, 100.5, "ValueError: boom", "Traceback ...", 10.0)


def _task(**fields: object) -> Task:
    return Task(**({"id": "t1", "type": "echo", "payload": {}} | fields))  # type: ignore[arg-type]


def test_a_first_success_shows_one_attempt_from_the_task_fields() -> None:
    task = _task(status=TaskStatus.SUCCEEDED, attempts=1, worker_id="w1", started_at=100.0, finished_at=100.2)

    assert task_view(task)["attempts_history"] == [
        {"number": 1, "outcome": "succeeded", "worker_id": "w1", "token": None, "started_at": 100.0,
         "finished_at": 100.2, "error": None, "traceback": None, "delay": None}]


def test_stored_attempts_come_first_then_the_running_one() -> None:
    task = _task(status=TaskStatus.RUNNING, attempts=2, worker_id="w2", started_at=111.0, history=(RETRIED,))

    view = task_view(task)

    assert "history" not in view
    assert [(a["number"], a["outcome"], a["worker_id"], a["finished_at"]) for a in view["attempts_history"]] == [
        (1, "retried", "w1", 100.5), (2, "running", "w2", None)]
    assert view["attempts_history"][0] | {"delay": 10.0, "token": 7, "error": "ValueError: boom"} == \
        view["attempts_history"][0]


def test_a_waiting_or_dead_task_shows_only_its_stored_attempts() -> None:
    for status in (TaskStatus.SCHEDULED, TaskStatus.DEAD):
        task = _task(status=status, attempts=1, started_at=100.0, history=(RETRIED,))
        assert [a["outcome"] for a in task_view(task)["attempts_history"]] == ["retried"]
    assert task_view(_task())["attempts_history"] == []


def test_the_codec_round_trips_a_history_and_reads_records_without_one() -> None:
    task = _task(status=TaskStatus.SCHEDULED, attempts=1, history=(RETRIED, Attempt(2, AttemptOutcome.LOST)))

    assert task_from_dict(task_to_dict(task)) == task
    assert "history" not in task_to_dict(_task())  # nothing added to a task that never failed
    assert task_from_dict(task_to_dict(_task())).history == ()
