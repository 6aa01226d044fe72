"""A tiny random LLaVA model: a one-layer CLIP vision tower on 28x28 images (four 14x14
patches, so each image becomes four placeholder tokens
(the class token's feature is dropped)) and a two-layer Llama language model
with the SmolLM2 tokenizer plus an `<image>` token, and a processor whose ChatML template
writes each image part as `<image>` in its place. Images are small PNGs of one colour."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from app.atomic import atomic_directory
from worker.trainer.models import file_lock, is_model_dir
from worker.trainer.tiny import LM_HEAD_STD, TINY_SEED, load_smollm2_tokenizer, tiny_config

VISION_MODEL_NAME = "tiny-vision"
IMAGE_TOKEN = "<image>"
IMAGE_SIZE = 28
PATCH_SIZE = 14

CHATML_WITH_IMAGES = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}{{ '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{{ '\\n' }}{% endif %}"
)


def build_tiny_vision_model(out_dir: Path) -> Path:
    """Write the tiny LLaVA model to `out_dir` (reused when complete) and return it."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    if is_model_dir(out_dir):
        return out_dir
    with file_lock(out_dir.parent / f".{out_dir.name}.lock"):
        if is_model_dir(out_dir):
            return out_dir
        tokenizer = load_smollm2_tokenizer()
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
        tokenizer.chat_template = CHATML_WITH_IMAGES
        ids = (tokenizer.bos_token_id, tokenizer.eos_token_id)
        text = tiny_config(len(tokenizer), *ids)
        vision = CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=IMAGE_SIZE,
            patch_size=PATCH_SIZE,
            projection_dim=32,
        )
        config = LlavaConfig(
            vision_config=vision,
            text_config=text,
            image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
            vision_feature_layer=-1,
            tie_word_embeddings=False,
        )
        image_processor = CLIPImageProcessor(
            size={"shortest_edge": IMAGE_SIZE},
            crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        )
        processor = LlavaProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            patch_size=PATCH_SIZE,
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,  # CLIP's class token, which "default" drops
            image_token=IMAGE_TOKEN,
            chat_template=CHATML_WITH_IMAGES,
        )
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(TINY_SEED)
            model = LlavaForConditionalGeneration(config)
            torch.nn.init.normal_(model.get_output_embeddings().weight, std=LM_HEAD_STD)
            model.generation_config.eos_token_id = tokenizer.eos_token_id
        with atomic_directory(out_dir) as staging:
            model.save_pretrained(staging)
            processor.save_pretrained(staging)
    return out_dir


def png(colour: tuple[int, int, int], size: int = IMAGE_SIZE) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def image_part(colour: tuple[int, int, int]) -> dict[str, Any]:
    """An OpenAI image content part holding a PNG of one colour as a data URL."""
    url = "data:image/png;base64," + base64.b64encode(png(colour)).decode()
    return {"type": "image_url", "image_url": {"url": url}}


def image_row(question: str, colour: tuple[int, int, int], **fields: Any) -> dict[str, Any]:
    content = [{"type": "text", "text": question}, image_part(colour)]
    return {"messages": [{"role": "user", "content": content}], **fields}
