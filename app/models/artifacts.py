"""Downloads of fine-tuned models: the LoRA adapter, or the adapter merged into its base.

Archives are `.tar.gz` streams written while they are sent: a tar header, the file in 1 MiB
pieces, and the padding, each through one gzip compressor, so memory stays flat however large
the model. Files stream straight from the artefact store. A merged model is built once by the
inference process, which publishes it to the merged-model store under a key derived from the
adapter's key and manifest; the API then streams it from there.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from app.artifact_store import ArtifactStore, artifact_store
from app.base_models import GEMMA3_NAME, SMOLLM2_NAME
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
HUB_IDS = {
    SMOLLM2_NAME: "HuggingFaceTB/SmolLM2-135M-Instruct",
    GEMMA3_NAME: "google/gemma-3-270m",
}
# the Gemma Terms of Use (section 3.1) ask every distribution of Gemma or a model derived from
# it to carry this notice in a "NOTICE" file
GEMMA_NOTICE = (
    "Gemma is provided under and subject to the Gemma Terms of Use found at "
    "ai.google.dev/gemma/terms\n"
)


@dataclass(frozen=True)
class Stored:
    """A file of a stored directory: its size and how to read it, piece by piece."""

    size: int
    chunks: Callable[[], Iterator[bytes]]


Member = Path | bytes | Stored


@dataclass(frozen=True)
class Archive:
    filename: str
    chunks: Iterator[bytes]


def archive_folder_name(model_id: str) -> str:
    """A folder name safe on every file system (model ids hold colons)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", model_id).strip("-") or "model"


def _stored_members(
    store: ArtifactStore, key: str, folder: str, keep: Callable[[str], bool]
) -> list[tuple[str, Member]]:
    files = store.files(key)
    return [
        (f"{folder}/{name}", Stored(size, lambda name=name: store.iter_file(key, name)))
        for name, size in sorted(files.items())
        if keep(name)
    ]


def adapter_archive(settings: Settings, model: ServedModel) -> Archive:
    """The adapter's files and a README on how to load them."""
    assert model.adapter_key is not None
    folder = archive_folder_name(model.id)
    store = artifact_store(settings, "checkpoints", "api")
    members: list[tuple[str, Member]] = [(f"{folder}/README.md", readme(model, folder).encode())]
    members += _notice(model, folder)
    members += _stored_members(
        store, model.adapter_key, folder, lambda name: bool(ADAPTER_FILES.match(name))
    )
    return Archive(f"{folder}.tar.gz", stream_tar_gz(members))


async def merged_archive(settings: Settings, model: ServedModel) -> Archive:
    """The merged model, merged and stored by the inference process on first request."""
    assert model.adapter_key is not None
    adapters = artifact_store(settings, "checkpoints", "api")
    request = MergeRequest(
        base_model=model.base_model,
        adapter_key=model.adapter_key,
        output_key=merged_model_key(adapters, model.adapter_key),
    )
    output_key = (await InferenceClient(settings.resolved_inference_url).merge(request)).output_key
    folder = f"{archive_folder_name(model.id)}-merged"
    store = artifact_store(settings, "merged", "api")
    members = _notice(model, folder)
    members += _stored_members(store, output_key, folder, lambda name: "/" not in name)
    # weights barely compress: the fastest level keeps the download CPU-light
    return Archive(f"{folder}.tar.gz", stream_tar_gz(members, level=1))


def _notice(model: ServedModel, folder: str) -> list[tuple[str, Member]]:
    if model.base_model != GEMMA3_NAME:
        return []
    return [(f"{folder}/NOTICE", GEMMA_NOTICE.encode())]


def merged_model_key(adapters: ArtifactStore, adapter_key: str) -> str:
    """Where the merge of this adapter is stored; a rewritten adapter gets a new key."""
    manifest = adapters.manifest(adapter_key) or {}
    stamp = f"{manifest.get('id')}:{sorted((manifest.get('files') or {}).items())}"
    return hashlib.sha256(f"{adapter_key}@{stamp}".encode()).hexdigest()[:32]


def stream_tar_gz(members: Iterable[tuple[str, Member]], level: int = 6) -> Iterator[bytes]:
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


def _tar_member(name: str, source: Member) -> Iterator[bytes]:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    if isinstance(source, bytes):
        info.size = len(source)
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        yield source
    elif isinstance(source, Stored):
        info.size, info.mtime = source.size, int(time.time())
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        sent = 0
        for chunk in source.chunks():
            sent += len(chunk)
            if sent > info.size:
                raise OSError(f"{name} grew while it was being sent")
            yield chunk
        if sent != info.size:
            raise OSError(f"{name} shrank while it was being sent")
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
    if model.base_model == GEMMA3_NAME:
        lines += [
            "",
            "OpenRFT trains on the de-quantised weights of `gemma-3-270m-q4_k_m.gguf` (the",
            f"pretrained model, Q4_K_M), which differ slightly from `{base}` on the Hub. That",
            "GGUF carries no chat template: prompts were rendered as plain `User: ...` lines",
            "ending in `Assistant:` (see the tokenizer's `chat_template` in the merged download).",
            "",
            "Gemma is provided under and subject to the Gemma Terms of Use",
            "(ai.google.dev/gemma/terms), and so is this model derived from it: see `NOTICE`.",
        ]
    return "\n".join(lines) + "\n"


def _metrics_table(model: ServedModel) -> list[str]:
    numbers = {key: value for key, value in model.metrics.items() if isinstance(value, int | float)}
    if not numbers:
        return []
    rows = [f"| {key} | {value:.6g} |" for key, value in sorted(numbers.items())]
    return ["## Metrics", "", "| metric | value |", "| --- | --- |", *rows, ""]
