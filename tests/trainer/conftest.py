"""Fixtures: the tiny random chat model, its policy, and small datasets and graders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from worker.trainer.tiny import build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-chat")


@pytest.fixture
def tiny_policy(tiny_model_dir: Path) -> Any:
    import torch

    from worker.trainer.models import load_policy

    torch.manual_seed(0)
    return load_policy(tiny_model_dir, lora_rank=4, lora_alpha=8, device="cpu", precision="fp32")


def question_rows(count: int, **item: Any) -> list[dict[str, Any]]:
    return [
        {"messages": [{"role": "user", "content": f"Question number {i}?"}], **item}
        for i in range(count)
    ]


# rewards a completion that contains the letter "e": about half of all tokens do, so a tiny
# random model starts near 0.5 and can learn to say only such tokens
CONTAINS_E = {
    "type": "string_check",
    "name": "contains_e",
    "input": "{{sample.output_text}}",
    "reference": "{{item.letter}}",
    "operation": "like",
}


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    """The tiny model's matrices are too small to split across threads; on a shared machine
    a second thread mostly waits for a busy core."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
