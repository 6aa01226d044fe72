"""Sharing a checkpoint with another project: what the grantee may do, and who manages it."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.api.jobfiles import train_tiny_job
from tests.services import LiveService

# the SDK marks `retrieve` deprecated in favour of `list`; both are served
pytestmark = pytest.mark.filterwarnings("ignore:Retrieve is deprecated:DeprecationWarning")


def _project_ids(service: LiveService) -> dict[str, str]:
    """Project name -> id, as `openrft projects list` prints them."""
    rows = [line.split("\t") for line in service.cli("projects", "list").splitlines()]
    return {name: project_id for project_id, name in rows}


def test_a_shared_checkpoint_is_usable_by_the_other_project_until_revoked(
    client: openai.OpenAI,
    other_client: openai.OpenAI,
    service: LiveService,
    tmp_path: Path,
) -> None:
    job_id = train_tiny_job(client, tmp_path, "shared")
    checkpoint = client.fine_tuning.jobs.checkpoints.list(job_id).data[0]
    model = checkpoint.fine_tuned_model_checkpoint
    projects = _project_ids(service)
    other_id, own_id = projects["other-project"], projects["default"]
    permissions = client.fine_tuning.checkpoints.permissions
    hello = [{"role": "user", "content": "Say hello."}]

    # before: the other project cannot see it, nor manage its permissions
    with pytest.raises(openai.NotFoundError):
        other_client.models.retrieve(model)
    with pytest.raises(openai.NotFoundError):
        other_client.fine_tuning.checkpoints.permissions.create(model, project_ids=[other_id])

    created = list(permissions.create(model, project_ids=[other_id]))
    [permission] = created
    assert permission.object == "checkpoint.permission" and permission.id.startswith("cp_")
    assert permission.project_id == other_id and permission.created_at > 0
    # granting again changes nothing
    assert [p.id for p in permissions.create(model, project_ids=[other_id])] == [permission.id]

    listed = permissions.list(model)
    assert [p.id for p in listed] == [permission.id]
    retrieved = permissions.retrieve(model)
    assert retrieved.object == "list" and [p.id for p in retrieved.data] == [permission.id]
    assert retrieved.has_more is False
    assert permissions.retrieve(model, project_id=own_id).data == []

    # the other project can now list, retrieve, chat with and download it
    assert model in [listed.id for listed in other_client.models.list()]
    shared = other_client.models.retrieve(model)
    assert shared.id == model and shared.owned_by == own_id
    reply = other_client.chat.completions.create(model=model, messages=hello, max_tokens=2)
    assert reply.model == model
    download = httpx.get(
        f"{service.base_url}/models/{model}/content",
        headers={"Authorization": f"Bearer {other_client.api_key}"},
        timeout=60,
    )
    assert download.status_code == 200 and download.content[:2] == b"\x1f\x8b"
    # but not manage it, nor delete it
    with pytest.raises(openai.PermissionDeniedError):
        other_client.fine_tuning.checkpoints.permissions.list(model)
    with pytest.raises(openai.PermissionDeniedError):
        other_client.fine_tuning.checkpoints.permissions.delete(
            permission.id, fine_tuned_model_checkpoint=model
        )
    with pytest.raises(openai.PermissionDeniedError):
        other_client.models.delete(model)
    # nor the job it came from
    with pytest.raises(openai.NotFoundError):
        other_client.fine_tuning.jobs.retrieve(job_id)

    deleted = permissions.delete(permission.id, fine_tuned_model_checkpoint=model)
    assert (deleted.id, deleted.object, deleted.deleted) == (
        permission.id,
        "checkpoint.permission",
        True,
    )
    assert list(permissions.list(model)) == []
    with pytest.raises(openai.NotFoundError):
        other_client.models.retrieve(model)
    with pytest.raises(openai.NotFoundError):
        other_client.chat.completions.create(model=model, messages=hello, max_tokens=2)
    assert model not in [listed.id for listed in other_client.models.list()]
    with pytest.raises(openai.NotFoundError):
        permissions.delete(permission.id, fine_tuned_model_checkpoint=model)


def test_bad_grants_are_400s_that_store_nothing(
    client: openai.OpenAI, service: LiveService, tmp_path: Path
) -> None:
    job_id = train_tiny_job(client, tmp_path, "grants")
    job = client.fine_tuning.jobs.retrieve(job_id)
    model = client.fine_tuning.jobs.checkpoints.list(job_id).data[0].fine_tuned_model_checkpoint
    projects = _project_ids(service)
    permissions = client.fine_tuning.checkpoints.permissions
    cases = [
        ([projects["default"], "proj_nope"], "this project"),
        (["proj_nope"], "no project 'proj_nope'"),
        ([], "at least one project"),
    ]
    for project_ids, message in cases:
        with pytest.raises(openai.BadRequestError, match=message) as raised:
            permissions.create(model, project_ids=project_ids)
        assert raised.value.param == "project_ids"
    assert list(permissions.list(model)) == []
    # only checkpoints are shared
    assert job.fine_tuned_model is not None
    with pytest.raises(openai.BadRequestError, match="not a checkpoint"):
        permissions.create(job.fine_tuned_model, project_ids=["proj_nope"])
    with pytest.raises(openai.NotFoundError):
        permissions.create(f"{model}0", project_ids=[projects["default"]])


def test_permissions_page_in_both_orders(
    client: openai.OpenAI, service: LiveService, tmp_path: Path
) -> None:
    for name in ("third-a", "third-b", "third-c"):
        service.key_for(name)
    projects = _project_ids(service)
    job_id = train_tiny_job(client, tmp_path, "paging")
    model = client.fine_tuning.jobs.checkpoints.list(job_id).data[0].fine_tuned_model_checkpoint
    permissions = client.fine_tuning.checkpoints.permissions
    granted = list(
        permissions.create(
            model, project_ids=[projects["third-a"], projects["third-b"], projects["third-c"]]
        )
    )
    ids = [permission.id for permission in granted]
    first = permissions.list(model, limit=2)
    assert [p.id for p in first.data] == ids[::-1][:2] and first.has_more
    assert [p.id for p in permissions.list(model, limit=1)] == ids[::-1]
    assert [p.id for p in permissions.list(model, limit=2, order="ascending")] == ids
    only = permissions.retrieve(model, project_id=projects["third-b"])
    assert [p.id for p in only.data] == [ids[1]]
