"""Downloads of fine-tuned models: the LoRA adapter, or the adapter merged into its base.

Archives are `.tar.gz` streams written while they are sent: a tar header, the file in 1 MiB
pieces, and the padding, each through one gzip compressor, so memory stays flat however large
the model. A merged model is built once by the inference process into the model cache.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from app.base_models import SMOLLM2_NAME
from app.inference_protocol import MergeRequest
from app.models.inference import InferenceClient
from app.models.service import ServedModel
from app.settings import Settings

CHUNK_BYTES = 1 << 20
TAR_BLOCK = tarfile.BLOCKSIZE
TAR_RECORD = tarfile.RECORDSIZE
# files of an adapter directory that belong in a download; training state stays behind
ADAPTER_FILES = re.compile(
    r"^(adapter_.*|tokenizer.*|special_tokens_map\.json|chat_template\..*|vocab\.json|"
    r"merges\.txt|added_tokens\.json|generation_config\.json)$"
)
HUB_IDS = {SMOLLM2_NAME: "HuggingFaceTB/SmolLM2-135M-Instruct"}


@dataclass(frozen=True)
class Archive:
    filename: str
    chunks: Iterator[bytes]


def archive_folder_name(model_id: str) -> str:
    """A folder name safe on every file system (model ids hold colons)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", model_id).strip("-") or "model"


def adapter_archive(model: ServedModel) -> Archive:
    """The adapter's files and a README on how to load them."""
    assert model.adapter_dir is not None
    folder = archive_folder_name(model.id)
    files = sorted(
        path
        for path in model.adapter_dir.iterdir()
        if path.is_file() and ADAPTER_FILES.match(path.name)
    )
    members: list[tuple[str, Path | bytes]] = [
        (f"{folder}/README.md", readme(model, folder).encode())
    ]
    members += [(f"{folder}/{path.name}", path) for path in files]
    return Archive(f"{folder}.tar.gz", stream_tar_gz(members))


async def merged_archive(settings: Settings, model: ServedModel) -> Archive:
    """The merged model directory, merged by the inference process on first request."""
    assert model.adapter_dir is not None
    output_dir = merged_model_dir(settings, model.adapter_dir)
    request = MergeRequest(
        base_model=model.base_model, adapter_dir=str(model.adapter_dir), output_dir=str(output_dir)
    )
    merged_dir = Path(
        (await InferenceClient(settings.resolved_inference_url).merge(request)).output_dir
    )
    folder = f"{archive_folder_name(model.id)}-merged"
    members: list[tuple[str, Path | bytes]] = [
        (f"{folder}/{path.name}", path) for path in sorted(merged_dir.iterdir()) if path.is_file()
    ]
    # weights barely compress: the fastest level keeps the download CPU-light
    return Archive(f"{folder}.tar.gz", stream_tar_gz(members, level=1))


def merged_model_dir(settings: Settings, adapter_dir: Path) -> Path:
    """Where the merge of this adapter is cached; a rewritten adapter gets a new place."""
    weights = sorted(adapter_dir.glob("adapter_model.*"))
    stamp = weights[0].stat().st_mtime_ns if weights else 0
    key = hashlib.sha256(f"{adapter_dir.resolve()}@{stamp}".encode()).hexdigest()[:32]
    return settings.model_cache_dir / "merged" / key


def stream_tar_gz(members: Iterable[tuple[str, Path | bytes]], level: int = 6) -> Iterator[bytes]:
    """A gzip-compressed tar of `(name in archive, file or bytes)`, produced piece by piece."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: gzip framing
    written = 0
    for name, source in members:
        for piece in _tar_member(name, source):
            written += len(piece)
            if compressed := compressor.compress(piece):
                yield compressed
    # two zero blocks end the archive; tar pads the whole to a record
    end = b"\0" * (2 * TAR_BLOCK)
    end += b"\0" * (-(written + len(end)) % TAR_RECORD)
    yield compressor.compress(end) + compressor.flush()


def _tar_member(name: str, source: Path | bytes) -> Iterator[bytes]:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    if isinstance(source, bytes):
        info.size = len(source)
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        yield source
    else:
        stat = source.stat()
        info.size, info.mtime = stat.st_size, int(stat.st_mtime)
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        with source.open("rb") as handle:
            remaining = info.size
            while remaining > 0:
                chunk = handle.read(min(CHUNK_BYTES, remaining))
                if not chunk:
                    raise OSError(f"{source} shrank while it was being sent")
                remaining -= len(chunk)
                yield chunk
    yield b"\0" * (-info.size % TAR_BLOCK)


def readme(model: ServedModel, folder: str) -> str:
    base = HUB_IDS.get(model.base_model, model.base_model)
    origin = f"job `{model.job_id}`"
    if model.step_number is not None:
        origin += f", checkpoint at step {model.step_number}"
    lines = [
        f"# {model.id}",
        "",
        f"A LoRA adapter for `{model.base_model}`, trained by OpenRFT ({origin}).",
        "",
        *_metrics_table(model),
        "## Load it",
        "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'base = AutoModelForCausalLM.from_pretrained("{base}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{base}")',
        f'model = PeftModel.from_pretrained(base, "{folder}")',
        "",
        'messages = [{"role": "user", "content": "Hello!"}]',
        "inputs = tokenizer.apply_chat_template(",
        '    messages, add_generation_prompt=True, return_tensors="pt", return_dict=True',
        ")",
        "output = model.generate(**inputs, max_new_tokens=64)",
        'print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))',
        "```",
        "",
        "`model.merge_and_unload()` folds the adapter into the base weights. The same server also",
        "gives the merged model ready to load: add `?format=merged` to this download's URL, then",
        '`AutoModelForCausalLM.from_pretrained("<folder>")`.',
    ]
    if model.base_model == SMOLLM2_NAME:
        lines += [
            "",
            f"OpenRFT trains on the de-quantised weights of `{SMOLLM2_NAME}.Q4_1.gguf`, which",
            f"differ slightly from `{base}` on the Hub; the merged download holds exactly the",
            "weights the adapter was trained with.",
        ]
    return "\n".join(lines) + "\n"


def _metrics_table(model: ServedModel) -> list[str]:
    numbers = {key: value for key, value in model.metrics.items() if isinstance(value, int | float)}
    if not numbers:
        return []
    rows = [f"| {key} | {value:.6g} |" for key, value in sorted(numbers.items())]
    return ["## Metrics", "", "| metric | value |", "| --- | --- |", *rows, ""]
