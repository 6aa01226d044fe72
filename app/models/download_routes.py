"""HTTP adapter for downloading a job's checkpoint, and the download response both routes use."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from app.auth import current_project, get_session, get_settings_dep
from app.models.artifacts import adapter_archive, merged_archive
from app.models.service import ServedModel, job_checkpoint
from app.projects import ProjectRef
from app.settings import Settings

router = APIRouter(prefix="/fine_tuning/jobs")

DownloadFormat = Literal["adapter", "merged"]


async def download(
    settings: Settings, model: ServedModel, format: DownloadFormat
) -> StreamingResponse:
    """A `.tar.gz` of the model's adapter, or of the adapter merged into its base."""
    archive = (
        await merged_archive(settings, model)
        if format == "merged"
        else await run_in_threadpool(adapter_archive, settings, model)
    )
    return StreamingResponse(
        archive.chunks,
        media_type="application/gzip",
        headers={"content-disposition": f'attachment; filename="{archive.filename}"'},
    )


@router.get("/{job_id}/checkpoints/{checkpoint_id}/content")
async def download_checkpoint(
    job_id: str,
    checkpoint_id: str,
    format: DownloadFormat = "adapter",
    project: ProjectRef = Depends(current_project),
    session: Session = Depends(get_session),
    settings: Settings = Depends(get_settings_dep),
) -> StreamingResponse:
    model = await run_in_threadpool(
        job_checkpoint, session, settings, project, job_id, checkpoint_id
    )
    return await download(settings, model, format)
