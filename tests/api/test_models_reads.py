"""/v1/models reads the catalogue from memory on the event loop, hopping to a thread only
for what touches folders or storage: a rescan, and the files of fine-tuned models."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest
from starlette.testclient import TestClient

import app.models.routes as model_routes
import app.reads as reads_module
from app.db import session_scope
from app.keys.service import create_key
from app.main import create_app
from app.migrate import upgrade
from app.settings import Settings


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions the models routes and reads ran in a thread."""
    seen: list[str] = []
    original = model_routes.run_in_threadpool

    async def counted(function: Callable[..., Any], *args: Any) -> Any:
        seen.append(getattr(function, "__name__", "?"))
        return await original(function, *args)

    monkeypatch.setattr(model_routes, "run_in_threadpool", counted)
    monkeypatch.setattr(reads_module, "run_in_threadpool", counted)
    return seen


def test_models_are_listed_and_retrieved_on_the_loop_once_the_catalogue_is_read(
    tmp_path: Path, tiny_models_root: Path, hops: list[str]
) -> None:
    models = tmp_path / "models"
    shutil.copytree(tiny_models_root / "tiny-chat", models / "tiny-chat")
    settings = Settings(data_dir=tmp_path / "data", model_dirs=[models])
    upgrade(settings)
    with session_scope(settings) as session:
        key = create_key(session, "a")
    client = openai.OpenAI(
        base_url="http://testserver/v1",
        api_key=key,
        http_client=TestClient(create_app(settings)),
        max_retries=0,
    )

    assert "tiny-chat" in [model.id for model in client.models.list()]
    first = len(hops)
    assert first <= 1  # the first read scans in a thread
    for _ in range(3):
        assert "tiny-chat" in [model.id for model in client.models.list()]
        assert client.models.retrieve("tiny-chat").owned_by == "openrft"
    assert len(hops) == first, hops

    # a model dropped into the folder is listed by the next request, read in a thread
    shutil.copytree(tiny_models_root / "tiny-chat", models / "added")
    assert "added" in [model.id for model in client.models.list()]
    assert len(hops) == first + 1
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nowhere")
