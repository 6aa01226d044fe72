"""Model directories: names, paths, the tiny model, and concurrent first use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from worker.trainer.models import resolve_model_dir


def test_a_directory_resolves_to_itself(tiny_model_dir: Path, tmp_path: Path) -> None:
    assert resolve_model_dir(str(tiny_model_dir), [], tmp_path) == tiny_model_dir.resolve()


def test_a_catalogue_name_resolves_through_model_dirs(tiny_model_dir: Path, tmp_path: Path) -> None:
    resolved = resolve_model_dir("tiny-chat", [tiny_model_dir.parent], tmp_path)
    assert resolved == tiny_model_dir.resolve()


def test_an_unknown_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown model 'no-such-model'"):
        resolve_model_dir("no-such-model", [], tmp_path)


def test_the_tiny_model_is_a_chat_model(tiny_model_dir: Path) -> None:
    from worker.trainer.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(tiny_model_dir)
    assert model.config.num_hidden_layers == 2
    assert len(tokenizer) == 49152
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>assistant\n")


def test_concurrent_first_builds_produce_one_complete_model(tmp_path: Path) -> None:
    target = tmp_path / "models" / "tiny-chat"
    code = f"from pathlib import Path\nfrom worker.trainer.tiny import build_tiny_model\nprint(build_tiny_model(Path({str(target)!r})))"
    builders = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [builder.communicate(timeout=300)[0].strip() for builder in builders]
    assert all(builder.returncode == 0 for builder in builders)
    assert outputs == [str(target), str(target)]
    assert sorted(path.name for path in target.parent.iterdir()) == [".tiny-chat.lock", "tiny-chat"]
    assert (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file()
