"""A base model's chat template, read from its files without loading a tokenizer (so without
torch): `tokenizer_config.json`'s `chat_template` or a `chat_template.jinja` beside it, or the
`tokenizer.chat_template` key of a GGUF file's metadata."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import BinaryIO

from app.artifact_store import ArtifactStore, MissingArtifact, artifact_store
from app.base_models import find_base_model
from app.settings import Settings
from app.tool_calls import chat_template_text

TOKENIZER_CONFIG = "tokenizer_config.json"
TEMPLATE_FILE = "chat_template.jinja"
GGUF_TEMPLATE_KEY = "tokenizer.chat_template"
# GGUF value types of a fixed size, by their type number (the GGUF specification)
_GGUF_FIXED_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def base_model_chat_template(settings: Settings, name: str) -> str | None:
    """The chat template of catalogue model `name`; None when it has none or is unknown."""
    model = find_base_model(settings, name)
    if model is None:
        return None
    if model.hf_dir is not None:
        return _template_in({file: _read(model.hf_dir / file) for file in _FILES})
    if model.gguf_file is not None:
        with open(model.gguf_file, "rb") as handle:
            return gguf_chat_template(handle)
    assert model.stored_key is not None
    store = artifact_store(settings, "models", "api")
    return _template_in({file: _stored(store, model.stored_key, file) for file in _FILES})


_FILES = (TEMPLATE_FILE, TOKENIZER_CONFIG)


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def _stored(store: ArtifactStore, key: str, name: str) -> bytes | None:
    try:
        return store.read_file(key, name)
    except MissingArtifact:
        return None


def _template_in(files: dict[str, bytes | None]) -> str | None:
    # transformers writes the template to its own file since 4.50, and reads that first
    template = files[TEMPLATE_FILE]
    if template is not None:
        return template.decode("utf-8")
    config = files[TOKENIZER_CONFIG]
    if config is None:
        return None
    return chat_template_text(json.loads(config).get("chat_template"))


def gguf_chat_template(handle: BinaryIO) -> str | None:
    """The chat template in a GGUF file's metadata, reading past everything else."""
    magic, _version, _tensors, pairs = struct.unpack("<4sIQQ", handle.read(24))
    if magic != b"GGUF":
        raise ValueError("not a GGUF file")
    for _ in range(pairs):
        key = _gguf_string(handle)
        (value_type,) = struct.unpack("<I", handle.read(4))
        if key == GGUF_TEMPLATE_KEY and value_type == _GGUF_STRING:
            return _gguf_string(handle)
        _skip_value(handle, value_type)
    return None


def _gguf_string(handle: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", handle.read(8))
    return handle.read(length).decode("utf-8", errors="replace")


def _skip_value(handle: BinaryIO, value_type: int) -> None:
    if value_type in _GGUF_FIXED_SIZES:
        handle.seek(_GGUF_FIXED_SIZES[value_type], 1)
    elif value_type == _GGUF_STRING:
        (length,) = struct.unpack("<Q", handle.read(8))
        handle.seek(length, 1)
    elif value_type == _GGUF_ARRAY:
        item_type, count = struct.unpack("<IQ", handle.read(12))
        if item_type in _GGUF_FIXED_SIZES:
            handle.seek(_GGUF_FIXED_SIZES[item_type] * count, 1)
        else:
            for _ in range(count):
                _skip_value(handle, item_type)
    else:
        raise ValueError(f"unknown GGUF value type {value_type}")
