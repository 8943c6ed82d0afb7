"""Which queues a worker serves: every queue a loaded task type declares plus `default`, unless HEXQ_QUEUES
(--queues) names them; and the start-up warning about queues with waiting tasks that nobody here serves."""

from __future__ import annotations

import asyncio
import logging
import pickle
from typing import Any

import pytest

from hexq.core.errors import ConfigurationError
from hexq.core.model import TaskStatus
from hexq.core.registry import Registry
from hexq.core.services import SubmitRequest
from hexq.functions.bootstrap import Container, bootstrap
from hexq.functions.settings import Settings
from hexq.functions.worker import announce, run_worker, serving


def images_registry() -> Registry:
    registry = Registry()

    @registry.task("resize", queue="images")
    async def resize(payload: dict[str, Any]) -> str:
        return "resized"

    @registry.task("thumbnail", queue="images")
    async def thumbnail(payload: dict[str, Any]) -> str:
        return "small"

    @registry.task("mail", queue="outbox")
    async def mail(payload: dict[str, Any]) -> str:
        return "sent"

    @registry.task("echo")
    async def echo(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    return registry


def container(registry: Registry, **settings: Any) -> Container:
    return bootstrap(Settings(backend_url="memory://", task_modules=(), idle_wait=0.05, **settings), registry=registry)


def test_the_registry_lists_the_queues_its_task_types_declare() -> None:
    assert images_registry().queues() == ("default", "images", "outbox")
    assert Registry().queues() == ()


def test_by_default_a_worker_serves_default_and_every_declared_queue() -> None:
    settings = Settings()
    assert not settings.queues_given and settings.queues == ("default",)  # until the task modules are known
    assert settings.serving(images_registry()).queues == ("default", "images", "outbox")
    registry = Registry()
    registry.task("resize", queue="images")(lambda payload: None)
    assert settings.serving(registry).queues == ("default", "images")  # default is served even if nobody declares it


@pytest.mark.parametrize("given", [Settings(queues=("default",)), Settings().override(queues=("images",)),
                                   Settings.from_env({"HEXQ_QUEUES": "images,default"})])
def test_queues_that_are_named_narrow_it(given: Settings) -> None:
    assert given.queues_given
    assert given.serving(images_registry()).queues == given.queues


def test_an_empty_hexq_queues_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="HEXQ_QUEUES names no queue"):
        Settings.from_env({"HEXQ_QUEUES": " , "})


def test_the_default_survives_the_trip_to_a_worker_process() -> None:
    # hexq serve pickles its settings to the pool's processes, which must still tell the default from a list
    for settings in (Settings(), Settings().serving(images_registry())):
        assert not pickle.loads(pickle.dumps(settings)).queues_given
    assert pickle.loads(pickle.dumps(Settings(queues=("a",)))).queues_given


async def test_run_worker_serves_a_declared_queue_without_being_told() -> None:
    c = container(images_registry())
    submitted = await c.tasks.submit_bulk([SubmitRequest("resize", {}), SubmitRequest("mail", {}),
                                           SubmitRequest("echo", {})])
    reports = await run_worker(c, asyncio.Event(), max_invocations=1, signals=False)
    assert reports[0].succeeded == 3
    assert {(await c.tasks.get(s.task.id)).status for s in submitted} == {TaskStatus.SUCCEEDED}


async def test_run_worker_with_named_queues_leaves_the_others_queued() -> None:
    c = container(images_registry(), queues=("default",))
    resize = (await c.tasks.submit(SubmitRequest("resize", {}))).task
    echo = (await c.tasks.submit(SubmitRequest("echo", {}))).task
    await run_worker(c, asyncio.Event(), max_invocations=1, signals=False)
    assert (await c.tasks.get(echo.id)).status is TaskStatus.SUCCEEDED
    assert (await c.tasks.get(resize.id)).status is TaskStatus.QUEUED


async def test_start_up_names_the_queues_and_warns_about_unserved_ones_with_waiting_tasks(
        caplog: pytest.LogCaptureFixture) -> None:
    c = serving(container(images_registry(), queues=("default", "outbox")))
    await c.tasks.submit_bulk([SubmitRequest("resize", {}), SubmitRequest("resize", {}), SubmitRequest("mail", {})])
    with caplog.at_level(logging.INFO, logger="hexq.worker"):
        assert await announce(c, "w1") == ["images"]  # outbox has a task too, but it is served
    served, warning = [r for r in caplog.records if r.name == "hexq.worker"]
    assert served.getMessage() == "serving queues default,outbox"
    assert warning.levelno == logging.WARNING
    assert warning.getMessage().startswith("queue images has 2 queued task(s) that this worker does not serve")
    assert "HEXQ_QUEUES (--queues) names only default,outbox" in warning.getMessage()


async def test_a_queue_no_loaded_type_declares_is_named_with_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    c = serving(container(images_registry()))
    await c.tasks.submit(SubmitRequest("echo", {}, queue="elsewhere"))  # a queue chosen at submit
    with caplog.at_level(logging.WARNING, logger="hexq.worker"):
        assert await announce(c) == ["elsewhere"]
    assert "no task type in HEXQ_TASKS declares it" in caplog.records[-1].getMessage()


async def test_nothing_waiting_elsewhere_means_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    c = serving(container(images_registry()))
    await c.tasks.submit(SubmitRequest("resize", {}))
    with caplog.at_level(logging.WARNING, logger="hexq.worker"):
        assert await announce(c) == []
    assert caplog.records == []
