"""A tiny random chat model whose chat template renders tools in the Hermes format that Qwen2.5
documents (tool signatures in `<tools></tools>` in the system turn, calls as `<tool_call>` JSON,
results as `<tool_response>` in a user turn). SmolLM2's ChatML tokens are Qwen's, so its tokenizer
takes the template as it is."""

from __future__ import annotations

import shutil
from pathlib import Path

from app.atomic import atomic_directory
from worker.trainer.models import file_lock, is_model_dir
from worker.trainer.tiny import build_tiny_model

TOOL_MODEL_NAME = "tiny-tools"

HERMES_TEMPLATE = (
    "{%- if messages[0].role == 'system' %}{% set system = messages[0].content %}"
    "{% set rest = messages[1:] %}{% else %}{% set system = 'You are a helpful assistant.' %}"
    "{% set rest = messages %}{% endif %}"
    "<|im_start|>system\n{{ system }}"
    "{% if tools %}{{ '\\n\\n' }}# Tools\n\nYou may call one or more functions to assist with the user "
    "query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n"
    "<tools>{% for tool in tools %}{{ '\\n' }}{{ tool | tojson }}{% endfor %}{{ '\\n' }}</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>{% endif %}'
    "<|im_end|>{{ '\\n' }}"
    "{% for message in rest %}"
    "{% if message.role == 'tool' %}"
    "{% if loop.first or loop.previtem.role != 'tool' %}<|im_start|>user{% endif %}"
    "{{ '\\n' }}<tool_response>\n{{ message.content }}\n</tool_response>"
    "{% if loop.last or loop.nextitem.role != 'tool' %}<|im_end|>{{ '\\n' }}{% endif %}"
    "{% else %}"
    "<|im_start|>{{ message.role }}{{ '\\n' }}{{ message.content or '' }}"
    "{% for call in message.tool_calls or [] %}"
    '{% if message.content or not loop.first %}{{ "\\n" }}{% endif %}'
    '<tool_call>\n{"name": "{{ call.function.name }}", "arguments": '
    "{{ call.function.arguments | tojson }}}\n</tool_call>"
    "{% endfor %}<|im_end|>{{ '\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{{ '\\n' }}{% endif %}"
)


def build_tiny_tool_model(models_root: Path) -> Path:
    """The tiny model at `models_root/tiny-tools`, its chat template the Hermes one."""
    from transformers import AutoTokenizer

    base = build_tiny_model(models_root / "tiny-chat")
    out_dir = models_root / TOOL_MODEL_NAME
    if is_model_dir(out_dir):
        return out_dir
    with file_lock(models_root / f".{TOOL_MODEL_NAME}.lock"):
        if is_model_dir(out_dir):
            return out_dir
        tokenizer = AutoTokenizer.from_pretrained(base)
        tokenizer.chat_template = HERMES_TEMPLATE
        with atomic_directory(out_dir) as staging:
            for name in ("config.json", "generation_config.json", "model.safetensors"):
                shutil.copy(base / name, staging / name)
            tokenizer.save_pretrained(staging)
    return out_dir
