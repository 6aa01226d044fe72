"""Images in dataset rows: base64 `data:` URLs, checked to be what they say before a job
trains on them. Workers fetch nothing from the network for a dataset, so an `https://` image
is refused rather than trained on without its picture."""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass
from typing import Any

# OpenAI's limit for one image in a fine-tuning example
MAX_IMAGE_BYTES = 10 * 1024 * 1024
# decoded pixels at most; a small file can claim an enormous canvas (a decompression bomb)
MAX_IMAGE_PIXELS = 40_000_000
IMAGE_FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP", "gif": "GIF"}
# vision model types whose image tokens are plain positions of a causal sequence: the trainer
# runs them (Qwen2-VL's 3-D rotary positions and Gemma 3's bidirectional attention over an
# image are not)
TRAINED_VISION_TYPES = ("llava",)
_DATA_URL = re.compile(r"^data:image/([a-z]+);base64,", re.IGNORECASE)


class ImageError(ValueError):
    """An image part that cannot be trained on; the message says why."""


@dataclass(frozen=True)
class DataURLImage:
    media_type: str  # "png", "jpeg", ...
    data: bytes


def decode_data_url(url: str) -> DataURLImage:
    """The bytes of a `data:image/<type>;base64,...` URL; ImageError for anything else."""
    match = _DATA_URL.match(url)
    if match is None:
        if url.startswith(("http://", "https://")):
            raise ImageError(
                "image URLs are not fetched; give the image inline as a base64 data URL "
                "(data:image/png;base64,...)"
            )
        raise ImageError("an image must be a base64 data URL (data:image/png;base64,...)")
    media_type = match.group(1).lower()
    if media_type not in IMAGE_FORMATS:
        raise ImageError(f"image/{media_type} is not supported; use PNG, JPEG, WEBP or GIF")
    encoded = url[match.end() :]
    if len(encoded) > (MAX_IMAGE_BYTES * 4) // 3 + 4:
        raise ImageError(f"the image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("the image's data URL is not valid base64") from None
    return DataURLImage(media_type, data)


def check_image_part(image: dict[str, Any]) -> None:
    """ImageError unless an `image_url` object's image can be trained on or shown to a model
    as given: OpenAI's `detail` picks a resolution, which here the model's processor sets."""
    detail = image.get("detail", "auto")
    if detail != "auto":
        raise ImageError(
            f"\"detail\": {detail!r} is not supported: the model's processor sets the image's "
            'resolution; leave "detail" out or use "auto"'
        )
    check_image(image["url"])


def check_image(url: str) -> None:
    """ImageError unless `url` holds a readable image of its stated type within the limits."""
    from PIL import Image

    image = decode_data_url(url)
    try:
        with Image.open(io.BytesIO(image.data)) as opened:
            width, height = opened.size
            found = opened.format
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageError(
                    f"the image is {width}x{height} pixels, more than {MAX_IMAGE_PIXELS:,}"
                )
            opened.verify()
    except ImageError:
        raise
    except Exception:
        raise ImageError(f"the data is not a readable {image.media_type.upper()} image") from None
    if found != IMAGE_FORMATS[image.media_type]:
        raise ImageError(f"the data URL says image/{image.media_type}, but the data is {found}")


def vision_refusal(config: dict[str, Any] | None) -> str | None:
    """None where a model of this config.json can be trained on prompts with images; else
    why not, as "it ..." (no config: a GGUF file, which here holds a text model)."""
    if config is None or "vision_config" not in config:
        return "it reads text only"
    model_type = config.get("model_type")
    if model_type not in TRAINED_VISION_TYPES:
        return (
            f"it is a {model_type} vision model, and images are trained on for LLaVA-style "
            "models only (whose image tokens are ordinary positions of the sequence)"
        )
    return None
