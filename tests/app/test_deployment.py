"""The deployment files a user runs: compose services and the images' build order."""

from __future__ import annotations

import re

import yaml

from scripts.requirements import requirements
from tests.services import REPO_ROOT

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
GPU = yaml.safe_load((REPO_ROOT / "docker-compose.gpu.yml").read_text())
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()


def test_every_service_has_a_healthcheck_or_is_one_shot() -> None:
    for name, service in COMPOSE["services"].items():
        assert "healthcheck" in service or service.get("restart") == "no", name


def test_only_the_one_shot_service_migrates() -> None:
    services = COMPOSE["services"]
    assert services["migrate"]["command"] == ["openrft", "migrate"]
    for name in ("api", "worker", "inference"):
        assert "--migrate" not in services[name]["command"], name
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
        for dependency in services[name]["depends_on"].values():
            assert dependency["condition"] in ("service_healthy", "service_completed_successfully")


def test_graders_reach_services_not_their_own_container() -> None:
    env = COMPOSE["x-openrft-env"]
    assert env["OPENRFT_GRADER_MODEL_BASE_URL"] == "http://api:8000/v1"
    assert env["OPENRFT_EMBEDDINGS_BASE_URL"] == "http://inference:8001/v1"


def test_gpu_variant_reserves_gpus_and_builds_on_cuda() -> None:
    for name in ("worker", "inference"):
        service = GPU["services"][name]
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"]
        assert "cuda" in service["build"]["args"]["PYTHON_IMAGE"]


def test_images_install_dependencies_before_the_source_and_run_unprivileged() -> None:
    for target in ("api", "worker"):
        deps = DOCKERFILE.index(f"FROM base AS {target}-deps")
        final = DOCKERFILE.index(f"AS {target}\n")
        assert deps < final
        stage = DOCKERFILE[final:].split("\nFROM ")[0]
        assert "COPY app ./app" in stage and "USER openrft" in stage and "HEALTHCHECK" in stage
        assert "requirements.txt" not in stage  # dependencies were installed in the deps stage
    assert not re.search(r"^USER root", DOCKERFILE, re.MULTILINE)


def test_api_requirements_leave_out_torch_and_worker_extra_adds_it() -> None:
    pyproject = REPO_ROOT / "pyproject.toml"
    api = " ".join(requirements(pyproject, []))
    assert "torch" not in api and "transformers" not in api
    worker = " ".join(requirements(pyproject, ["worker"]))
    assert "torch" in worker and "transformers" in worker and "peft" in worker


def test_services_share_object_storage_not_a_disk() -> None:
    env = COMPOSE["x-openrft-env"]
    assert env["OPENRFT_STORAGE_URL"].startswith("s3://")
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    services = COMPOSE["services"]
    for name in ("api", "worker", "inference"):
        assert "volumes" not in services[name], name
        assert services[name]["depends_on"]["minio-init"] == {
            "condition": "service_completed_successfully"
        }
    assert "mc mb" in " ".join(services["minio-init"]["command"])
