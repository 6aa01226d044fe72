"""HTTP adapter for /v1/chat/completions."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from app.auth import current_project, get_session, get_settings_dep
from app.models.chat_schemas import ChatCompletion, ChatCompletionRequest
from app.models.inference import create_chat_completion
from app.projects import ProjectRef
from app.settings import Settings

router = APIRouter()


# with `stream`, server-sent `chat.completion.chunk` events instead of the object
@router.post("/chat/completions", response_model=ChatCompletion)
async def create(
    body: ChatCompletionRequest,
    project: ProjectRef = Depends(current_project),
    session: Session = Depends(get_session),
    settings: Settings = Depends(get_settings_dep),
) -> ChatCompletion | StreamingResponse:
    return await create_chat_completion(session, settings, project, body)
