"""Images in prompts, for vision models of the LLaVA kind.

Such a model's processor writes each image into the prompt as a run of placeholder tokens,
one per image feature, and the model's forward puts the vision tower's features where those
tokens are; the rest is an ordinary causal decoder. The trainer keeps working on token ids:
only where a prompt enters the decoder (the prefill of sampling, the packed training forward)
its embeddings come from `input_embeddings`, with the image features in the placeholders.
The vision tower and its projector are frozen; LoRA adapts the language model alone.

Architectures whose image tokens need more than that (Qwen2-VL's 3-D rotary positions, Gemma
3's bidirectional attention over an image) are refused before a job starts
(app.images.vision_refusal).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from app.images import decode_data_url
from app.tool_calls import template_messages
from worker.trainer.data import encode_prompt, prompt_turns


def _image_urls(content: Any) -> list[str]:
    if not isinstance(content, list):
        return []
    return [
        part["image_url"]["url"]
        for part in content
        if isinstance(part, dict) and part.get("type") == "image_url"
    ]


def vision_messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
    """The messages as a processor's chat template reads them (an image as `{"type":
    "image"}` in its place among the text parts) and the images in order, as PIL images."""
    from PIL import Image

    shown = template_messages(messages)  # text parts joined; images put back below
    images = []
    for original, message in zip(messages, shown, strict=True):
        content = original.get("content")
        if not _image_urls(content):
            continue
        parts = []
        for part in content:
            if part.get("type") == "image_url":
                data = decode_data_url(part["image_url"]["url"]).data
                images.append(Image.open(io.BytesIO(data)).convert("RGB"))
                parts.append({"type": "image"})
            elif part.get("type") == "text":
                parts.append({"type": "text", "text": part["text"]})
        message["content"] = parts
    return shown, images


@dataclass
class VisionPrompt:
    ids: list[int]
    pixel_values: Tensor | None  # [images, channels, height, width]; None without images


def encode_vision_prompt(processor: Any, row: dict[str, Any]) -> VisionPrompt:
    """Token ids of the row's chat-templated prompt, each image expanded to its placeholder
    tokens, and the images' pixel values."""
    shown, images = vision_messages(prompt_turns(row))
    text = processor.apply_chat_template(
        shown, tools=row.get("tools") or None, add_generation_prompt=True, tokenize=False
    )
    encoded = processor(
        text=text, images=images or None, return_tensors="pt", add_special_tokens=False
    )
    pixel_values = encoded.get("pixel_values") if images else None
    return VisionPrompt(encoded["input_ids"][0].tolist(), pixel_values)


def image_features(model: Any, pixel_values: Tensor) -> Tensor:
    """The projected features of a batch of images, one row per placeholder token, in order."""
    outputs = model.get_image_features(pixel_values=pixel_values, return_dict=True)
    features = getattr(outputs, "pooler_output", outputs)
    if isinstance(features, (list, tuple)):
        features = torch.cat(list(features))
    return features.reshape(-1, features.shape[-1])


def input_embeddings(
    model: Any,
    embed: Any,
    input_ids: Tensor,
    images: list[Tensor | None],
    prompt_lengths: Tensor,
    image_token_id: int,
) -> Tensor:
    """Embeddings of `input_ids` [S, L] with the features of sequence s's images (`images[s]`)
    in the placeholders within its first `prompt_lengths[s]` positions (sampled tokens that
    happen to be the placeholder stay tokens). Frozen parts: no gradient."""
    with torch.no_grad():
        embeds = embed(input_ids)
        pixels = [pixel_values for pixel_values in images if pixel_values is not None]
        if not pixels:
            return embeds
        features = image_features(model, torch.cat(pixels).to(embeds.device))
        columns = torch.arange(input_ids.shape[1], device=input_ids.device)
        slots = (input_ids == image_token_id) & (columns[None, :] < prompt_lengths[:, None])
        if int(slots.sum()) != features.shape[0]:
            raise ValueError(
                f"a prompt has {int(slots.sum())} image placeholder tokens for "
                f"{features.shape[0]} image features (does its text contain the placeholder?)"
            )
        return embeds.masked_scatter(slots[..., None], features.to(embeds.dtype))


def encode_prompts(
    policy: Any, rows: Sequence[dict[str, Any]]
) -> tuple[list[list[int]], list[Tensor | None] | None]:
    """The rows' prompt token ids and, for a vision model, each one's images (None where it
    has none); text models get no image list."""
    if policy.processor is None:
        return [encode_prompt(policy.tokenizer, row) for row in rows], None
    encoded = [encode_vision_prompt(policy.processor, row) for row in rows]
    return [prompt.ids for prompt in encoded], [prompt.pixel_values for prompt in encoded]
