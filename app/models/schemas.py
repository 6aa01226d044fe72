"""OpenAI `model` objects for base and fine-tuned models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelDeleted(BaseModel):
    id: str
    object: Literal["model"] = "model"
    deleted: bool = True


class CheckpointPermissionObject(BaseModel):
    id: str
    object: Literal["checkpoint.permission"] = "checkpoint.permission"
    created_at: int
    project_id: str


class CheckpointPermissionDeleted(BaseModel):
    id: str
    object: Literal["checkpoint.permission"] = "checkpoint.permission"
    deleted: bool = True


class PermissionCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project_ids: list[str]
