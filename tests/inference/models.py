"""Tiny models for inference tests: a random Llama with the SmolLM2 tokenizer (also with a tool
template, and a tiny LLaVA beside it), LoRA adapters on it, and a live server that serves them, with job and checkpoint rows written straight to its
database as the worker would."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.services import LiveService, free_port, live_service, service_env
from tests.tool_models import build_tiny_tool_model
from tests.vision_models import VISION_MODEL_NAME, build_tiny_vision_model

TINY_MODEL_NAME = "tiny-chat"


def build_tiny_base(root: Path) -> Path:
    """A tiny random chat model at `root/tiny-chat` (so `root` can be an OPENRFT_MODEL_DIRS)."""
    from worker.trainer.tiny import build_tiny_model

    return build_tiny_model(root / TINY_MODEL_NAME)


def build_adapter(base_dir: Path, out_dir: Path, seed: int) -> Path:
    """A LoRA adapter with random weights on both factors, so that it changes the outputs
    (PEFT starts B at zero, which would make the adapter a no-op)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj", "down_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    get_peft_model(model, config).save_pretrained(out_dir)
    return out_dir


@dataclass
class ServedModels:
    """A live server and the models in its database."""

    service: LiveService
    base_dir: Path
    # the tiny model again, with a chat template that renders tools
    tool_model_dir: Path
    vision_model_dir: Path  # a tiny LLaVA model
    fine_tuned_model: str
    fine_tuned_adapter: Path
    checkpoint_model: str
    checkpoint_adapter: Path
    job_id: str
    checkpoint_id: str
    project_id: str


def _write_rows(
    service: LiveService, base_dir: Path, tool_model_dir: Path, vision_model_dir: Path
) -> ServedModels:
    """A succeeded job with a fine-tuned model and one checkpoint, adapters in place."""
    from app import ids
    from app.db import session_factory
    from app.settings import Settings
    from app.tables import Checkpoint, Job, Project, now

    settings = Settings(
        database_url=service.env.get("OPENRFT_DATABASE_URL"), data_dir=service.data_dir
    )
    base_model = base_dir.name
    job_id = ids.new_job_id()
    checkpoint_path, result_path = f"{job_id}/step-2", f"{job_id}/final"
    build_adapter(base_dir, settings.checkpoints_dir / checkpoint_path, seed=1)
    build_adapter(base_dir, settings.checkpoints_dir / result_path, seed=2)
    with session_factory(settings)() as session:
        project = session.query(Project).filter_by(name="default").one()
        fine_tuned = ids.fine_tuned_model_name(base_model, project.name, "tiny", job_id)
        checkpoint_model = ids.checkpoint_model_name(fine_tuned, 2)
        checkpoint_id = ids.new_checkpoint_id()
        session.add(
            Job(
                id=job_id,
                project_id=project.id,
                model=base_model,
                status="succeeded",
                training_file="file-unused",
                suffix="tiny",
                seed=7,
                method={"type": "reinforcement"},
                fine_tuned_model=fine_tuned,
                result_adapter_path=result_path,
                finished_at=now(),
            )
        )
        session.flush()
        session.add(
            Checkpoint(
                id=checkpoint_id,
                job_id=job_id,
                step_number=2,
                fine_tuned_model_checkpoint=checkpoint_model,
                metrics={"step": 2, "train_reward_mean": 0.25, "valid_reward_mean": 0.5},
                storage_path=checkpoint_path,
            )
        )
        session.commit()
        project_id = project.id
    return ServedModels(
        service=service,
        base_dir=base_dir,
        tool_model_dir=tool_model_dir,
        vision_model_dir=vision_model_dir,
        fine_tuned_model=fine_tuned,
        fine_tuned_adapter=settings.checkpoints_dir / result_path,
        checkpoint_model=checkpoint_model,
        checkpoint_adapter=settings.checkpoints_dir / checkpoint_path,
        job_id=job_id,
        checkpoint_id=checkpoint_id,
        project_id=project_id,
    )


def _wait_for_inference(url: str, service: LiveService) -> None:
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"the inference process did not start:\n{service.log()}")


@contextmanager
def serving_tiny_models(root: Path) -> Iterator[ServedModels]:
    """`openrft serve` with the tiny model as a base model and its inference process."""
    base_dir = build_tiny_base(root / "models")
    tool_model_dir = build_tiny_tool_model(root / "models")
    vision_model_dir = build_tiny_vision_model(root / "models" / VISION_MODEL_NAME)
    data_dir = root / "data"
    inference_port = free_port()
    env = service_env(
        data_dir,
        "embedded",
        None,
        OPENRFT_MODEL_DIRS=str(base_dir.parent),
        OPENRFT_INFERENCE_PORT=str(inference_port),
        # a tiny model's matrices are too small to share out: threads only add contention
        OMP_NUM_THREADS="1",
    )
    with live_service(env, data_dir) as service:
        _wait_for_inference(f"http://127.0.0.1:{inference_port}", service)
        yield _write_rows(service, base_dir, tool_model_dir, vision_model_dir)


_shared: dict[str, ServedModels] = {}


def shared_served_models(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> ServedModels:
    """One server for every module that asks, stopped when the test session ends."""
    if "models" not in _shared:
        context = serving_tiny_models(tmp_path_factory.mktemp("served-models"))
        _shared["models"] = context.__enter__()
        request.config.add_cleanup(lambda: context.__exit__(None, None, None))
    return _shared["models"]
