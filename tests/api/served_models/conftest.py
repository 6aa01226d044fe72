"""The API with served models (a base model, a fine-tuned one, a checkpoint and a model with
tools), shared by every module here, and the official SDK's client for it."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import make_client
from tests.inference.models import ServedModels, shared_served_models


@pytest.fixture(scope="module")
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> ServedModels:
    return shared_served_models(request, tmp_path_factory)


@pytest.fixture(scope="module")
def client(served: ServedModels) -> openai.OpenAI:
    return make_client(served.service)
