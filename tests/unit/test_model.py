from __future__ import annotations

from dataclasses import replace

import pytest

from hexq.core.clock import stamped
from hexq.core.errors import InvalidTransition, ValidationError
from hexq.core.model import Priority, Task, TaskStatus, can_move
from hexq.core.retry import RetryPolicy


def test_priority_parses_names_numbers_and_booleans() -> None:
    assert Priority.parse("critical") is Priority.CRITICAL
    assert Priority.parse("LOW") is Priority.LOW
    assert Priority.parse(2) is Priority.HIGH
    assert Priority.parse(True) is Priority.HIGH
    assert Priority.parse(False) is Priority.NORMAL


@pytest.mark.parametrize("bad", ["urgent", 4, -1, 1.5, None, [], "1"])
def test_priority_rejects_anything_else(bad: object) -> None:
    with pytest.raises(ValidationError) as info:
        Priority.parse(bad)
    assert info.value.field == "priority"


def test_transition_table_allows_the_lifecycle() -> None:
    task = Task(id="t", type="echo", payload={}, status=TaskStatus.SCHEDULED)
    task = task.moved_to(TaskStatus.QUEUED).moved_to(TaskStatus.RUNNING).moved_to(TaskStatus.FAILED)
    task = task.moved_to(TaskStatus.SCHEDULED).moved_to(TaskStatus.QUEUED).moved_to(TaskStatus.RUNNING)
    assert task.moved_to(TaskStatus.SUCCEEDED, result=1).result == 1


@pytest.mark.parametrize(("current", "target"), [
    (TaskStatus.SUCCEEDED, TaskStatus.QUEUED),
    (TaskStatus.QUEUED, TaskStatus.SUCCEEDED),
    (TaskStatus.DEAD, TaskStatus.CANCELLED),
    (TaskStatus.CANCELLED, TaskStatus.QUEUED),
    (TaskStatus.SCHEDULED, TaskStatus.RUNNING),
])
def test_illegal_transitions_raise(current: TaskStatus, target: TaskStatus) -> None:
    assert not can_move(current, target)
    with pytest.raises(InvalidTransition):
        Task(id="t", type="echo", payload={}, status=current).moved_to(target)


def test_terminal_states_have_no_way_out_but_dead_replay() -> None:
    assert not any(can_move(TaskStatus.SUCCEEDED, s) for s in TaskStatus)
    assert not any(can_move(TaskStatus.CANCELLED, s) for s in TaskStatus)
    assert [s for s in TaskStatus if can_move(TaskStatus.DEAD, s)] == [TaskStatus.QUEUED]


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(base=1.0, cap=10.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert policy.delay(10_000) == 10.0


def test_jitter_stays_within_its_share() -> None:
    policy = RetryPolicy(base=8.0, cap=100.0, jitter=0.5)
    assert policy.delay(1, rand=lambda: 0.0) == 8.0
    assert policy.delay(1, rand=lambda: 0.999999) == pytest.approx(4.0, abs=1e-4)


# -- hexq.core.clock.stamped: the one rule for the times a backend stores ---------------------------------
NOW = 1_700_000_000.0


def _waiting(**fields: object) -> Task:
    return Task(**({"id": "t", "type": "echo", "payload": {}} | fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(("run_at", "delay", "status", "due"), [
    (0.0, 0.0, TaskStatus.QUEUED, NOW),               # submitted to run now
    (0.0, 30.0, TaskStatus.SCHEDULED, NOW + 30),      # a delay counts from the backend's now
    (NOW + 60, 0.0, TaskStatus.SCHEDULED, NOW + 60),  # an absolute time is kept as it is
    (NOW - 60, 0.0, TaskStatus.QUEUED, NOW),          # ... and one already past is due now
])
def test_a_new_task_is_due_by_the_backends_clock(run_at: float, delay: float, status: TaskStatus,
                                                 due: float) -> None:
    # The status the submitting process guessed does not count: the backend decides.
    for guess in (TaskStatus.QUEUED, TaskStatus.SCHEDULED):
        task = stamped(_waiting(status=guess, run_at=run_at, delay=delay, created_at=NOW - 3600), NOW, new=True)

        assert (task.status, task.run_at, task.created_at) == (status, due, NOW)


def test_a_retry_is_due_its_delay_after_now_and_a_finished_task_finished_now() -> None:
    retry = _waiting(status=TaskStatus.SCHEDULED, run_at=NOW - 100, delay=4.0, created_at=NOW - 200,
                     finished_at=NOW + 3600)
    done = _waiting(status=TaskStatus.SUCCEEDED, run_at=NOW - 100, finished_at=NOW + 3600)
    running = _waiting(status=TaskStatus.RUNNING, run_at=NOW - 100)

    assert stamped(retry, NOW) == replace(retry, run_at=NOW + 4, finished_at=None)  # created_at stays
    assert stamped(done, NOW) == replace(done, finished_at=NOW)
    assert stamped(running, NOW) == running


def test_a_transition_copies_every_other_field() -> None:
    task = Task(id="t", type="echo", payload={"a": 1}, queue="q", priority=Priority.HIGH, status=TaskStatus.RUNNING,
                attempts=2, max_attempts=5, timeout=9.0, run_at=1.0, delay=2.0, created_at=3.0, started_at=4.0,
                worker_id="w", idempotency_key="k", tenant="acme")
    moved = task.moved_to(TaskStatus.SUCCEEDED, result={"ok": True}, error=None)
    assert moved == replace(task, status=TaskStatus.SUCCEEDED, result={"ok": True}, error=None)
    assert task.status is TaskStatus.RUNNING and task.result is None  # the original is untouched


def test_a_transition_or_a_copy_refuses_an_unknown_field() -> None:
    from hexq.core.model import replaced

    task = Task(id="t", type="echo", payload={}, status=TaskStatus.RUNNING)
    with pytest.raises(TypeError, match="colour"):
        task.moved_to(TaskStatus.SUCCEEDED, colour="red")
    with pytest.raises(TypeError, match="colour"):
        replaced(task, colour="red")
    assert replaced(task, status=TaskStatus.QUEUED, attempts=3) == replace(task, status=TaskStatus.QUEUED, attempts=3)


def test_with_id_copies_every_field_but_the_id() -> None:
    task = Task(id="a" * 32, type="echo", payload={"x": 1}, queue="mail", priority=Priority.HIGH, tenant="acme",
                idempotency_key="k", status=TaskStatus.SCHEDULED, run_at=5.0, created_at=1.0)
    moved = task.with_id("b" * 32 + ".mail")
    assert moved.id == "b" * 32 + ".mail" and task.id == "a" * 32
    assert replace(moved, id=task.id) == task
