"""Keys are managed by the operator: the admin API and `openrft keys list|revoke`; a revoked
key is refused from its next request on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from starlette.testclient import TestClient

from app.db import session_scope
from app.keys.service import create_key
from app.main import create_app
from app.migrate import upgrade
from app.settings import Settings
from tests.services import REPO_ROOT

ADMIN = "sk-admin-test-0123456789"


def _app(tmp_path: Path, admin_key: str | None = ADMIN) -> tuple[TestClient, str]:
    settings = Settings(data_dir=tmp_path / "data", admin_key=admin_key)
    upgrade(settings)
    with session_scope(settings) as session:
        project_key = create_key(session, "default")
    return TestClient(create_app(settings)), project_key


def _sdk(http: TestClient, key: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url="http://testserver/v1", api_key=key, http_client=http, max_retries=0
    )


def test_admin_api_makes_projects_and_keys_and_revokes_them(tmp_path: Path) -> None:
    http, project_key = _app(tmp_path)
    admin = {"authorization": f"Bearer {ADMIN}"}
    created = http.post("/v1/organization/projects", json={"name": "team-b"}, headers=admin)
    assert created.status_code == 200, created.text
    project = created.json()
    assert project["object"] == "organization.project" and project["name"] == "team-b"
    names = [p["name"] for p in http.get("/v1/organization/projects", headers=admin).json()["data"]]
    assert names == ["default", "team-b"]

    key = http.post(f"/v1/organization/projects/{project['id']}/api_keys", headers=admin).json()
    assert key["object"] == "organization.project.api_key" and key["value"].startswith("sk-")
    team_b = _sdk(http, key["value"])
    assert team_b.files.list().data == []
    listed = http.get(f"/v1/organization/projects/{project['id']}/api_keys", headers=admin).json()
    assert [k["id"] for k in listed["data"]] == [key["id"]]
    assert key["value"] not in listed["data"][0]["redacted_value"]  # shown once, at creation

    deleted = http.delete(
        f"/v1/organization/projects/{project['id']}/api_keys/{key['id']}", headers=admin
    )
    assert deleted.json() == {
        "object": "organization.project.api_key.deleted", "id": key["id"], "deleted": True,
    }  # fmt: skip
    with pytest.raises(openai.AuthenticationError):
        team_b.files.list()
    again = http.delete(
        f"/v1/organization/projects/{project['id']}/api_keys/{key['id']}", headers=admin
    )
    assert again.status_code == 404
    # a project's own key is not an admin key
    refused = http.get(
        "/v1/organization/projects", headers={"authorization": f"Bearer {project_key}"}
    )
    assert refused.status_code == 401
    assert _sdk(http, project_key).files.list().data == []


def test_admin_api_is_off_without_an_admin_key(tmp_path: Path) -> None:
    http, project_key = _app(tmp_path, admin_key=None)
    response = http.get(
        "/v1/organization/projects", headers={"authorization": f"Bearer {project_key}"}
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "admin_api_disabled"


def test_cli_lists_and_revokes_keys(tmp_path: Path) -> None:
    http, project_key = _app(tmp_path)
    env = {key: value for key, value in os.environ.items() if not key.startswith("OPENRFT_")}
    env["OPENRFT_DATA_DIR"] = str(tmp_path / "data")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app.cli", "keys", *args],
            env=env, cwd=REPO_ROOT, capture_output=True, text=True,
        )  # fmt: skip

    listing = cli("list").stdout.splitlines()
    assert len(listing) == 1 and project_key not in listing[0]
    key_id, project_name, prefix, _ = listing[0].split("\t")
    assert project_name == "default" and project_key.startswith(prefix.removesuffix("..."))
    assert _sdk(http, project_key).files.list().data == []
    assert cli("revoke", key_id).stdout.strip() == f"revoked {key_id}"
    with pytest.raises(openai.AuthenticationError):
        _sdk(http, project_key).files.list()
    missing = cli("revoke", key_id)
    assert missing.returncode == 2 and "no key" in missing.stderr
