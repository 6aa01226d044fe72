"""The inference process on a vision model: greedy choices for a prompt with an image equal
`generate` with the same pixels, and a merged download keeps the processor that reads them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.vision_models import build_tiny_vision_model, image_row
from worker.inference.merge import merge_adapter
from worker.inference.pool import ModelPool
from worker.inference.sampling import SamplingParams, sample
from worker.trainer.vision import encode_vision_prompt


def random_adapter(base_dir: Path, out_dir: Path) -> Path:
    """LoRA on the language model's attention, both factors random."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(3)
    model = AutoModelForImageTextToText.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=r".*language_model\..*\.(q_proj|v_proj)",
        init_lora_weights=False,
    )
    get_peft_model(model, config).save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def vision_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_vision_model(tmp_path_factory.mktemp("vision") / "tiny-vision")


def test_greedy_choices_with_an_image_equal_generate(vision_dir: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    adapter_dir = random_adapter(vision_dir, tmp_path / "adapter")
    pool = ModelPool(max_bases=1, max_adapters_per_base=1)
    with pool.activate(vision_dir, adapter_dir) as loaded:
        prompt = encode_vision_prompt(loaded.processor, image_row("Colour?", (200, 10, 10)))
        params = SamplingParams(max_tokens=8, temperature=0.0, n=2)
        choices = sample(loaded.model, loaded.vocab, prompt.ids, params, prompt.pixel_values)
        eos_ids = loaded.vocab.eos_ids

    base = AutoModelForImageTextToText.from_pretrained(vision_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    with torch.no_grad():
        generated = model.generate(
            input_ids=torch.tensor([prompt.ids]),
            pixel_values=prompt.pixel_values,
            do_sample=False,
            max_new_tokens=8,
            pad_token_id=base.generation_config.eos_token_id,
        )
    expected = generated[0, len(prompt.ids) :].tolist()
    for choice in choices:
        assert choice.token_ids == [t for t in expected if t not in eos_ids]


def test_a_merged_vision_model_keeps_its_processor(vision_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    adapter_dir = random_adapter(vision_dir, tmp_path / "adapter")
    merged = merge_adapter(vision_dir, adapter_dir, tmp_path / "merged")
    processor = AutoProcessor.from_pretrained(merged)
    prompt = encode_vision_prompt(processor, image_row("Colour?", (200, 10, 10)))
    assert prompt.pixel_values is not None and prompt.ids.count(processor.image_token_id) == 4
    model = AutoModelForImageTextToText.from_pretrained(merged)
    assert not any("lora" in name for name, _ in model.named_parameters())
