"""A base model's chat template, read from its files without loading a tokenizer (so without
torch): `tokenizer_config.json`'s `chat_template` or a `chat_template.jinja` beside it, or the
`tokenizer.chat_template` key of a GGUF file's metadata (a file split into parts included)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from app.artifact_store import ArtifactStore, MissingArtifact, artifact_store
from app.base_models import find_base_model
from app.gguf_header import GGUFHeaderError, read_gguf_value
from app.settings import Settings
from app.tool_calls import chat_template_text

TOKENIZER_CONFIG = "tokenizer_config.json"
TEMPLATE_FILE = "chat_template.jinja"
GGUF_TEMPLATE_KEY = "tokenizer.chat_template"


def base_model_chat_template(settings: Settings, name: str) -> str | None:
    """The chat template of catalogue model `name`; None when it has none or is unknown."""
    model = find_base_model(settings, name)
    if model is None:
        return None
    if model.hf_dir is not None:
        return _template_in({file: _read(model.hf_dir / file) for file in _FILES})
    gguf = (model.gguf_file,) if model.gguf_file is not None else model.gguf_parts
    if gguf:
        return _gguf_template(gguf, gguf[0].stat().st_mtime)
    assert model.stored_key is not None
    store = artifact_store(settings, "models", "api")
    return _template_in({file: _stored(store, model.stored_key, file) for file in _FILES})


@lru_cache(maxsize=16)
def _gguf_template(paths: tuple[Path, ...], _mtime: float) -> str | None:
    """The template in a GGUF file's metadata (Gemma 3's 262k-token vocabulary comes before
    it, ~0.6 s to read past, so once per file and modification time). A file that is not
    a GGUF this reader understands has none; loading it fails later with the reason."""
    try:
        template = read_gguf_value(paths, GGUF_TEMPLATE_KEY)
    except GGUFHeaderError:
        return None
    return template if isinstance(template, str) else None


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
