"""Recently used models, kept loaded: a few base models, each with a few LoRA adapters.

A base model loads onto the GPU (in bf16) where there is one, else onto the CPU in fp32. Every
adapter of a base is loaded into that base's one `PeftModel` under its own adapter name, so
adapters share the base weights; a request activates its adapter with `set_adapter`, or runs the
bare base with the adapters disabled. The pool is not thread-safe: the engine serialises its use.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.inference.sampling import Vocabulary
from worker.trainer.models import (
    inference_placement,
    is_vision_model,
    load_model_and_tokenizer,
    load_processor,
)


@dataclass
class LoadedBase:
    # the base model, or the PeftModel wrapping it once an adapter has been loaded
    model: Any
    vocab: Vocabulary
    context_length: int
    # a vision model's processor (it writes images into prompts); None for a text model
    processor: Any = None
    # adapter key -> PEFT adapter name, least recently used first
    adapters: OrderedDict[str, str] = field(default_factory=OrderedDict)


def generation_eos_ids(model: Any) -> set[int]:
    """The tokens the model's generation config ends a turn with (Llama 3's <|eot_id|>,
    Gemma's <end_of_turn>), besides the tokenizer's end-of-sequence token."""
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        return set()
    return set(eos) if isinstance(eos, list) else {eos}


def adapter_key(adapter_dir: Path) -> str:
    """The adapter's path and weights' modification time: a rewritten adapter is reloaded."""
    weights = next(iter(sorted(adapter_dir.glob("adapter_model.*"))), None)
    stamp = weights.stat().st_mtime_ns if weights else 0
    return f"{adapter_dir.resolve()}@{stamp}"


def _adapter_folder_exists(key: str) -> bool:
    return (Path(key.rsplit("@", 1)[0]) / "adapter_config.json").is_file()


class ModelPool:
    def __init__(self, max_bases: int = 2, max_adapters_per_base: int = 4) -> None:
        self.max_bases = max_bases
        self.max_adapters_per_base = max_adapters_per_base
        self._bases: OrderedDict[Path, LoadedBase] = OrderedDict()
        self._adapter_names = (f"adapter_{number}" for number in itertools.count())

    def base(self, model_dir: Path) -> LoadedBase:
        """The loaded base model, loading it (and evicting the least recently used) if needed."""
        if model_dir in self._bases:
            self._bases.move_to_end(model_dir)
            return self._bases[model_dir]
        device, dtype = inference_placement()
        model, tokenizer = load_model_and_tokenizer(model_dir, device=device, dtype=dtype)
        context_length = int(getattr(model.config, "max_position_embeddings", 2048))
        vocab = Vocabulary(tokenizer, generation_eos_ids(model))
        processor = load_processor(model_dir) if is_vision_model(model_dir) else None
        loaded = LoadedBase(model, vocab, context_length, processor)
        self._bases[model_dir] = loaded
        while len(self._bases) > self.max_bases:
            self._bases.popitem(last=False)
        return loaded

    @contextmanager
    def activate(self, base_dir: Path, adapter_dir: Path | None) -> Iterator[LoadedBase]:
        """The base with `adapter_dir` active (or every adapter disabled) while the block runs."""
        from peft import PeftModel

        self._forget_deleted_adapters(base_dir)
        loaded = self.base(base_dir)
        if adapter_dir is None:
            if isinstance(loaded.model, PeftModel):
                with loaded.model.disable_adapter():
                    yield loaded
            else:
                yield loaded
            return
        name = self._adapter_name(loaded, adapter_dir)  # may wrap the model in a PeftModel
        loaded.model.set_adapter(name)
        yield loaded

    def _forget_deleted_adapters(self, base_dir: Path) -> None:
        """Unload the adapters whose folder is gone (their model was deleted): nobody can ask
        for them again, and they would hold memory until evicted."""
        loaded = self._bases.get(base_dir)
        if loaded is None:
            return
        gone = [key for key in loaded.adapters if not _adapter_folder_exists(key)]
        if not gone:
            return
        if len(gone) == len(loaded.adapters):
            # PEFT leaves a model without adapters in no state to load the next one: drop the
            # base instead, it loads again on its next request
            del self._bases[base_dir]
            return
        for key in gone:
            loaded.model.delete_adapter(loaded.adapters.pop(key))

    def loaded_adapters(self, base_dir: Path) -> list[str]:
        """The adapter keys loaded on `base_dir`, least recently used first."""
        loaded = self._bases.get(base_dir)
        return list(loaded.adapters) if loaded else []

    def _adapter_name(self, loaded: LoadedBase, adapter_dir: Path) -> str:
        key = adapter_key(adapter_dir)
        if key in loaded.adapters:
            loaded.adapters.move_to_end(key)
            return loaded.adapters[key]
        from peft import PeftModel

        name = next(self._adapter_names)
        if isinstance(loaded.model, PeftModel):
            loaded.model.load_adapter(str(adapter_dir), adapter_name=name)
        else:
            loaded.model = PeftModel.from_pretrained(
                loaded.model, str(adapter_dir), adapter_name=name
            )
        loaded.model.eval()
        loaded.adapters[key] = name
        while len(loaded.adapters) > self.max_adapters_per_base:
            _, evicted = loaded.adapters.popitem(last=False)
            loaded.model.delete_adapter(evicted)
        return name
