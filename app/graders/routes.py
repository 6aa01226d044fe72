"""HTTP adapter for /v1/fine_tuning/alpha/graders: run a grader on one sample, or validate it.

A run goes to the grader-run pool (`run_limits`), not FastAPI's shared thread pool, so slow
python or model graders cannot hold the threads that every other request needs.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from app.auth import bearer_token, current_project, get_settings_dep
from app.errors import bad_request, rate_limited
from app.graders import GraderConfig, grade, make_sample, normalize_grader, validate_grader
from app.graders.run_limits import Busy, GraderRunLimiter
from app.graders.schemas import GraderRunRequest, GraderValidateRequest, GraderValidateResponse
from app.projects import ProjectRef
from app.settings import Settings

router = APIRouter(prefix="/fine_tuning/alpha/graders")


def _checked_grader(grader: Any, settings: Settings) -> dict[str, Any]:
    errors = validate_grader(grader, max_source_bytes=settings.grader_max_source_bytes)
    if errors:
        first = errors[0]
        raise bad_request(
            f"Invalid grader: {first.message}", param=first.path, code="invalid_grader"
        )
    return normalize_grader(grader)


# how long a refused client should wait: about one typical python grader run
RUN_RETRY_AFTER_SECONDS = 5


@router.post("/run")
async def run_grader(
    body: GraderRunRequest,
    request: Request,
    project: ProjectRef = Depends(current_project),
    settings: Settings = Depends(get_settings_dep),
) -> dict[str, Any]:
    grader = _checked_grader(body.grader, settings)
    # model graders calling this service act as the caller's project, with the caller's key
    config = GraderConfig.from_settings(settings, own_key=bearer_token(request))
    sample, item = make_sample(body.model_sample), body.item or {}
    limiter: GraderRunLimiter = request.app.state.grader_runs
    try:
        result = await limiter.run(project.id, lambda: grade(grader, sample, item, config))
    except Busy as busy:
        raise rate_limited(
            f"Too many grader runs at once: {busy.reason}. Retry when one has finished.",
            RUN_RETRY_AFTER_SECONDS,
        ) from None
    return result.to_run_response()


@router.post("/validate", response_model=GraderValidateResponse)
def validate(
    body: GraderValidateRequest,
    project: ProjectRef = Depends(current_project),
    settings: Settings = Depends(get_settings_dep),
) -> GraderValidateResponse:
    return GraderValidateResponse(grader=_checked_grader(body.grader, settings))
