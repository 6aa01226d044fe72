"""A base model's directory on this host, wherever the catalogue found it.

A model from the local catalogue (the SmolLM2 package, `OPENRFT_MODEL_DIRS`) resolves as before;
one pushed to storage is fetched into this process's cache of models (size-bounded, least
recently used first), so a worker or inference process on another host needs only the bucket.
"""

from __future__ import annotations

from pathlib import Path

from app.artifact_store import MissingArtifact, artifact_store
from app.base_models import STORED_NAME, find_base_model_in
from app.settings import Settings


def base_model_dir(settings: Settings, name: str, role: str) -> Path:
    """Raises ValueError for a name no catalogue knows."""
    from worker.trainer.models import resolve_model_dir

    local = find_base_model_in(settings.model_dirs, name) is not None
    if local or not STORED_NAME.match(name):
        return resolve_model_dir(name, settings.model_dirs, settings.model_cache_dir)
    store = artifact_store(settings, "models", role)
    try:
        # the directory stays in the cache after the block, until newer models push it out; a
        # worker trains one job at a time, so it is not evicted under its own training
        with store.local_dir(name) as path:
            return resolve_model_dir(str(path), settings.model_dirs, settings.model_cache_dir)
    except MissingArtifact:
        raise ValueError(
            f"unknown model {name!r}: not in the catalogue, not a directory, not in storage"
        ) from None
