"""Merging a LoRA adapter into its base: a full Hugging Face model directory, written once."""

from __future__ import annotations

from pathlib import Path

from app.atomic import atomic_directory
from worker.trainer.models import (
    file_lock,
    is_model_dir,
    is_vision_model,
    load_model_and_tokenizer,
    load_processor,
)


def merge_adapter(base_dir: Path, adapter_dir: Path, output_dir: Path) -> Path:
    """Write base + adapter as one model directory (weights, config, tokenizer) at `output_dir`.

    The directory appears by atomic rename, complete or not at all; a second call, or one waiting
    on the lock while another process merges, finds it and does nothing.
    """
    if is_model_dir(output_dir):
        return output_dir
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(output_dir.parent / f".{output_dir.name}.lock"):
        if not is_model_dir(output_dir):
            _merge_into(base_dir, adapter_dir, output_dir)
    return output_dir


def _merge_into(base_dir: Path, adapter_dir: Path, output_dir: Path) -> None:
    from peft import PeftModel

    # a fresh copy of the base: merging rewrites its weights, so never the pool's shared one
    model, tokenizer = load_model_and_tokenizer(base_dir)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    with atomic_directory(output_dir) as staging:
        merged.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if is_vision_model(base_dir):  # its image processor and the template images use
            load_processor(base_dir).save_pretrained(staging)
