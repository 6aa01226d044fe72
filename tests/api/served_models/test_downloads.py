"""Downloading fine-tuned models and checkpoints, and listing them under /v1/models."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import httpx
import openai
import pytest

from app.base_models import packaged_models
from tests.conftest import make_client
from tests.inference.models import ServedModels


@pytest.fixture(scope="module")
def other_key(served: ServedModels) -> str:
    return served.service.key_for("other-project")


def download(
    served: ServedModels, path: str, key: str | None = None, **params: str
) -> httpx.Response:
    """GET a download, reading the body as a stream."""
    headers = {"Authorization": f"Bearer {key or served.service.api_key}"}
    url = f"{served.service.base_url}{path}"
    with httpx.stream("GET", url, headers=headers, params=params, timeout=300) as response:
        response.read()
    return response


def extract(response: httpx.Response, into: Path) -> Path:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as archive:
        [folder] = {name.split("/")[0] for name in archive.getnames()}
        archive.extractall(into, filter="data")
    return into / folder


def test_a_checkpoint_downloads_as_an_adapter_that_peft_loads(
    served: ServedModels, tmp_path: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = f"/fine_tuning/jobs/{served.job_id}/checkpoints/{served.checkpoint_id}/content"
    folder = extract(download(served, path), tmp_path)
    weights = folder / "adapter_model.safetensors"
    assert weights.read_bytes() == (served.checkpoint_adapter / weights.name).read_bytes()
    readme = (folder / "README.md").read_text().splitlines()
    assert readme[:12] == [
        f"# {served.checkpoint_model}",
        "",
        f"A LoRA adapter for `{served.base_dir.name}`, trained by OpenRFT"
        f" (job `{served.job_id}`, checkpoint at step 2).",
        "",
        "## Metrics",
        "",
        "| metric | value |",
        "| --- | --- |",
        "| step | 2 |",
        "| train_reward_mean | 0.25 |",
        "| valid_reward_mean | 0.5 |",
        "",
    ]
    assert f'model = PeftModel.from_pretrained(base, "{folder.name}")' in readme

    base = AutoModelForCausalLM.from_pretrained(served.base_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, folder)
    tokenizer = AutoTokenizer.from_pretrained(served.base_dir)
    inputs = tokenizer("Hello", return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert output.shape[1] == inputs["input_ids"].shape[1] + 3


def test_a_fine_tuned_model_downloads_merged_and_transformers_loads_it(
    served: ServedModels, tmp_path: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = f"/models/{served.fine_tuned_model}/content"
    folder = extract(download(served, path, format="merged"), tmp_path)
    merged = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    base_template = AutoTokenizer.from_pretrained(served.base_dir).chat_template
    assert base_template and AutoTokenizer.from_pretrained(folder).chat_template == base_template

    base = AutoModelForCausalLM.from_pretrained(served.base_dir, dtype=torch.float32)
    adapted = PeftModel.from_pretrained(base, served.fine_tuned_adapter)
    inputs = torch.tensor([[1, 50, 500, 5000]])
    with torch.no_grad():
        assert torch.allclose(merged(inputs).logits, adapted(inputs).logits, atol=1e-4)
    # the merge is cached: a second download is served from the same directory
    again = extract(download(served, path, format="merged"), tmp_path / "again")
    assert _contents(again) == _contents(folder)


def _contents(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file()
    }


def test_the_fine_tuned_model_downloads_as_an_adapter(served: ServedModels, tmp_path: Path) -> None:
    folder = extract(download(served, f"/models/{served.fine_tuned_model}/content"), tmp_path)
    names = sorted(path.name for path in folder.iterdir())
    assert names == ["README.md", "adapter_config.json", "adapter_model.safetensors"]


def test_downloads_are_not_found_from_another_project(served: ServedModels, other_key: str) -> None:
    codes = {
        f"/fine_tuning/jobs/{served.job_id}/checkpoints/{served.checkpoint_id}/content": "job",
        f"/models/{served.fine_tuned_model}/content": "model",
        f"/models/{served.checkpoint_model}/content": "model",
    }
    for path, kind in codes.items():
        response = download(served, path, key=other_key)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == f"{kind}_not_found", path


def test_bad_download_requests(served: ServedModels) -> None:
    unknown = download(served, f"/fine_tuning/jobs/{served.job_id}/checkpoints/ftckpt_nope/content")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "checkpoint_not_found"
    base = download(served, f"/models/{served.base_dir.name}/content")
    assert base.status_code == 400
    bad_format = download(served, f"/models/{served.fine_tuned_model}/content", format="zip")
    assert (bad_format.status_code, bad_format.json()["error"]["param"]) == (400, "format")


def test_models_list_and_retrieve_fine_tuned_models_per_project(
    client: openai.OpenAI, served: ServedModels, other_key: str
) -> None:
    listed = {model.id: model for model in client.models.list()}
    # base models, then the project's one fine-tuned model; checkpoints are not listed
    packaged = [model.name for model in packaged_models()]
    bases = [
        *packaged,
        served.base_dir.name,
        served.tool_model_dir.name,
        served.vision_model_dir.name,
    ]
    assert list(listed)[: len(bases)] == bases
    # the project's fine-tuned models (other modules of this server train some too)
    fine_tuned = list(listed)[len(bases) :]
    assert served.fine_tuned_model in fine_tuned and all(m.startswith("ft:") for m in fine_tuned)
    assert listed[served.fine_tuned_model].owned_by == served.project_id
    retrieved = client.models.retrieve(served.checkpoint_model)
    assert (retrieved.id, retrieved.owned_by) == (served.checkpoint_model, served.project_id)

    other = make_client(served.service, other_key)
    assert [model.id for model in other.models.list()] == bases
    with pytest.raises(openai.NotFoundError):
        other.models.retrieve(served.fine_tuned_model)
