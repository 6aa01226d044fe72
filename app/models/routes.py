"""HTTP adapter for /v1/models: base models, the project's fine-tuned models, and downloads."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from app.auth import current_project, get_session, get_settings_dep, reads
from app.errors import bad_request
from app.models.deletion import delete_model
from app.models.download_routes import DownloadFormat, download
from app.models.schemas import ModelDeleted, ModelObject
from app.models.service import ServedModel, list_models, resolve_model
from app.pagination import page
from app.settings import Settings
from app.tables import Project

router = APIRouter()


def _model_object(model: ServedModel) -> ModelObject:
    return ModelObject(id=model.id, created=model.created, owned_by=model.owned_by)


@router.get("/models")
async def list_all_models(
    request: Request,
    project: Project = Depends(current_project),
    settings: Settings = Depends(get_settings_dep),
) -> dict:
    # the catalogue reads model folders and the artefact store: one thread hop (app.reads)
    def read(session: Session) -> list[ServedModel]:
        return list_models(session, settings, project)

    models = await reads(request).in_thread(read)
    return page([_model_object(model) for model in models], False)


# declared before the catch-all retrieve route: model ids may hold slashes
@router.get("/models/{model_id:path}/content")
async def download_model(
    model_id: str,
    format: DownloadFormat = "adapter",
    project: Project = Depends(current_project),
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
    project: Project = Depends(current_project),
    settings: Settings = Depends(get_settings_dep),
) -> ModelObject:
    def read(session: Session) -> ServedModel:
        return resolve_model(session, settings, project, model_id)

    return _model_object(await reads(request).in_thread(read))


@router.delete("/models/{model_id:path}", response_model=ModelDeleted)
def delete(
    model_id: str,
    project: Project = Depends(current_project),
    session: Session = Depends(get_session),
    settings: Settings = Depends(get_settings_dep),
) -> ModelDeleted:
    delete_model(session, settings, project, model_id)
    return ModelDeleted(id=model_id)
