"""HTTP adapter for /v1/models: base models, the project's fine-tuned models, and downloads."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from app.auth import current_project, get_session, get_settings_dep, reads
from app.base_models import catalogue_is_fresh, find_base_model
from app.errors import bad_request
from app.models.deletion import delete_model
from app.models.download_routes import DownloadFormat, download
from app.models.schemas import ModelDeleted, ModelObject
from app.models.service import (
    ServedModel,
    base_served,
    keep_with_files,
    list_base_served,
    project_model_candidates,
    resolve_model,
)
from app.pagination import page
from app.projects import ProjectRef
from app.settings import Settings

router = APIRouter()
T = TypeVar("T")


def _model_object(model: ServedModel) -> ModelObject:
    return ModelObject(id=model.id, created=model.created, owned_by=model.owned_by)


async def _from_catalogue(settings: Settings, read: Callable[[], T]) -> T:
    """`read()` of the base-model catalogue: on the event loop while the catalogue is in
    memory, else in a thread (it lists folders, and storage where models were pushed)."""
    if catalogue_is_fresh(settings):
        return read()
    return await run_in_threadpool(read)


@router.get("/models")
async def list_all_models(
    request: Request,
    project: ProjectRef = Depends(current_project),
    settings: Settings = Depends(get_settings_dep),
) -> dict:
    models = await _from_catalogue(settings, lambda: list_base_served(settings))
    candidates = await project_model_candidates(reads(request), project)
    if candidates:  # their files are checked in storage: one thread hop
        models += await run_in_threadpool(keep_with_files, settings, candidates)
    return page([_model_object(model) for model in models], False)


# declared before the catch-all retrieve route: model ids may hold slashes
@router.get("/models/{model_id:path}/content")
async def download_model(
    model_id: str,
    format: DownloadFormat = "adapter",
    project: ProjectRef = Depends(current_project),
    session: Session = Depends(get_session),
    settings: Settings = Depends(get_settings_dep),
) -> StreamingResponse:
    model = await run_in_threadpool(resolve_model, session, settings, project, model_id)
    if model.adapter_key is None:
        raise bad_request(
            f"'{model_id}' is a base model; only fine-tuned models can be downloaded.",
            param="model",
        )
    return await download(settings, model, format)


@router.get("/models/{model_id:path}", response_model=ModelObject)
async def retrieve_model(
    model_id: str,
    request: Request,
    project: ProjectRef = Depends(current_project),
    settings: Settings = Depends(get_settings_dep),
) -> ModelObject:
    base = await _from_catalogue(settings, lambda: find_base_model(settings, model_id))
    if base is not None:
        return _model_object(base_served(base))

    def read(session: Session) -> ServedModel:
        return resolve_model(session, settings, project, model_id)

    return _model_object(await reads(request).in_thread(read))


@router.delete("/models/{model_id:path}", response_model=ModelDeleted)
def delete(
    model_id: str,
    project: ProjectRef = Depends(current_project),
    session: Session = Depends(get_session),
    settings: Settings = Depends(get_settings_dep),
) -> ModelDeleted:
    delete_model(session, settings, project, model_id)
    return ModelDeleted(id=model_id)
