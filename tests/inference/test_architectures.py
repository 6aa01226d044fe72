"""The inference process on every supported architecture: a base model with a LoRA adapter from
the model pool decodes greedily exactly as `generate` does on the same base and adapter."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.trainer.architectures import ARCHITECTURES, build_tiny_architecture
from worker.inference.pool import ModelPool
from worker.inference.sampling import SamplingParams, sample
from worker.trainer.models import LORA_TARGET_MODULES


def random_adapter(base_dir: Path, out_dir: Path) -> Path:
    """A LoRA adapter on every linear layer the trainer adapts, both factors random."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=LORA_TARGET_MODULES,
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    get_peft_model(model, config).save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def architecture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("architectures")


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_greedy_choices_equal_generate_with_the_adapter(
    architecture_root: Path, tmp_path: Path, name: str
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base_dir = build_tiny_architecture(name, architecture_root / name)
    adapter_dir = random_adapter(base_dir, tmp_path / "adapter")
    pool = ModelPool(max_bases=1, max_adapters_per_base=1)
    messages = [{"role": "user", "content": "What is the capital city of France, and why?"}]
    with pool.activate(base_dir, adapter_dir) as loaded:
        prompt_ids = loaded.vocab.encode_chat(messages)
        params = SamplingParams(max_tokens=12, temperature=0.0, n=2)
        choices = sample(loaded.model, loaded.vocab, prompt_ids, params)
        seeded = SamplingParams(max_tokens=12, temperature=1.0, n=2, seed=4)
        first = sample(loaded.model, loaded.vocab, prompt_ids, seeded)
        again = sample(loaded.model, loaded.vocab, prompt_ids, seeded)

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    with torch.no_grad():
        generated = model.generate(
            input_ids=torch.tensor([prompt_ids]),
            do_sample=False,
            max_new_tokens=12,
            pad_token_id=loaded.vocab.tokenizer.eos_token_id,
        )
    expected = generated[0, len(prompt_ids) :].tolist()
    for choice in choices:
        assert choice.token_ids == [t for t in expected if t not in loaded.vocab.eos_ids]
    assert [c.token_ids for c in first] == [c.token_ids for c in again]
