"""HTTP adapter for /v1/models: the base models this installation offers."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.auth import current_project, get_settings_dep
from app.base_models import find_base_model, list_base_models
from app.errors import not_found
from app.models import Project
from app.schemas.common import page
from app.schemas.models import ModelObject
from app.settings import Settings

router = APIRouter()

BASE_MODEL_OWNER = "openrft"


@router.get("/models")
def list_models(
    project: Project = Depends(current_project),
    settings: Settings = Depends(get_settings_dep),
) -> dict:
    models = [
        ModelObject(id=model.name, created=model.created, owned_by=BASE_MODEL_OWNER)
        for model in list_base_models(settings)
    ]
    return page(models, has_more=False)


@router.get("/models/{model_id:path}", response_model=ModelObject)
def retrieve_model(
    model_id: str,
    project: Project = Depends(current_project),
    settings: Settings = Depends(get_settings_dep),
) -> ModelObject:
    model = find_base_model(settings, model_id)
    if model is None:
        raise not_found("model", model_id, param="model")
    return ModelObject(id=model.name, created=model.created, owned_by=BASE_MODEL_OWNER)
