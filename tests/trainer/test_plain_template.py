"""A model without a chat template (a pretrained one, such as gemma-3-270m) gets the plain
template, and its prompts and answers render as plain turns."""

from __future__ import annotations

import shutil
from pathlib import Path

from worker.trainer.data import encode_answer, encode_prompt
from worker.trainer.models import has_plain_template, load_tokenizer

ROW = {
    "messages": [
        {"role": "developer", "content": "Answer with the city only."},
        {"role": "user", "content": [{"type": "text", "text": "Capital of France?"}]},
        {"role": "assistant", "content": "Paris"},
    ]
}


def test_a_model_without_a_template_gets_the_plain_one(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    pretrained = tmp_path / "pretrained"
    shutil.copytree(tiny_model_dir, pretrained)
    (pretrained / "chat_template.jinja").unlink()
    tokenizer = load_tokenizer(pretrained)
    assert has_plain_template(tokenizer)
    assert not has_plain_template(load_tokenizer(tiny_model_dir))

    prompt = tokenizer.decode(encode_prompt(tokenizer, ROW))  # a developer message is a system one
    bos = tokenizer.bos_token or ""
    assert (
        prompt == f"{bos}System: Answer with the city only.\nUser: Capital of France?\nAssistant:"
    )
    # the answer ends in end-of-sequence, where sampling stops
    assert encode_answer(tokenizer, ROW)[-1] == tokenizer.eos_token_id
    history = tokenizer.apply_chat_template(ROW["messages"], tokenize=False)
    assert history.endswith(f"Assistant: Paris{tokenizer.eos_token}\n")
