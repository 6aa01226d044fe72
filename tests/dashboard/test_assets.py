"""The dashboard is served by the API itself, whole and offline: no file it loads comes from
elsewhere, and /v1 keeps answering in OpenAI's shapes."""

from __future__ import annotations

import re

import httpx
import pytest

from app.dashboard import STATIC_DIR
from tests.services import LiveService


def test_every_asset_is_local() -> None:
    files = [path for path in STATIC_DIR.rglob("*") if path.is_file()]
    assert {path.suffix for path in files} <= {".html", ".css", ".js"}
    for path in files:
        text = path.read_text()
        # no CDN, no remote font: nothing that would need the network (the SVG namespace is a name)
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg\b)|//cdn|@import", text), path
    for path in STATIC_DIR.rglob("*.js"):
        for match in re.finditer(r'from "(\.{1,2}/[^"]+)"', path.read_text()):
            assert (path.parent / match.group(1)).resolve().is_file(), (path, match.group(1))


@pytest.mark.parametrize("service", ["embedded"], indirect=True)
def test_the_page_and_its_assets_are_served(service: LiveService) -> None:
    root = service.base_url.removesuffix("/v1")
    page = httpx.get(f"{root}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    for asset in re.findall(r'(?:src|href)="(/assets/[^"]+)"', page.text):
        response = httpx.get(f"{root}{asset}")
        assert response.status_code == 200, asset
    script = httpx.get(f"{root}/assets/js/app.js")
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))

    # the REST API and its errors are unchanged under /v1
    unknown = httpx.get(
        f"{root}/v1/no-such-thing", headers={"authorization": f"Bearer {service.api_key}"}
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_url"
    assert httpx.get(f"{root}/assets/../app/main.py").status_code == 404
