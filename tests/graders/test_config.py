from __future__ import annotations

from pathlib import Path

from app.graders import GraderConfig
from app.settings import Settings


def test_from_settings_maps_limits_and_hides_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        grader_timeout_seconds=5,
        grader_memory_bytes=1024**3,
        grader_max_source_bytes=1000,
        grader_file_size_bytes=2048,
        grader_max_processes=8,
        grader_sandbox_pool_size=3,
        port=9999,
        api_key="sk-own",
    )
    config = GraderConfig.from_settings(settings)
    assert (config.timeout_seconds, config.memory_bytes, config.max_source_bytes) == (
        5,
        1024**3,
        1000,
    )
    assert (config.file_size_bytes, config.max_processes, config.sandbox_pool_size) == (2048, 8, 3)
    assert config.hidden_paths == ((tmp_path / "data").resolve(),)
    # model graders default to this service's own endpoint, which enforces json_object
    assert config.model_base_url == "http://127.0.0.1:9999/v1"
    assert config.model_api_key == "sk-own"
    assert config.model_response_format == "json_object"


def test_an_external_grader_model_endpoint_gets_structured_outputs(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        grader_model_base_url="http://127.0.0.1:1/v1",
        grader_model_api_key="sk-judge",
        embeddings_base_url="http://127.0.0.1:2/v1",
    )
    config = GraderConfig.from_settings(settings)
    assert config.model_api_key == "sk-judge"
    assert config.model_response_format == "json_schema"
    assert config.embeddings_base_url == "http://127.0.0.1:2/v1"
    assert config.sandbox_pool_size >= 1


def test_an_external_model_endpoint_gets_only_its_own_key(tmp_path: Path) -> None:
    own = GraderConfig.from_settings(Settings(data_dir=tmp_path, api_key="sk-service"))
    assert own.model_api_key == "sk-service"  # this service calling itself
    external = Settings(
        data_dir=tmp_path, api_key="sk-service", grader_model_base_url="https://models.example/v1"
    )
    assert GraderConfig.from_settings(external).model_api_key is None
    named = Settings(
        data_dir=tmp_path, api_key="sk-service",
        grader_model_base_url="https://models.example/v1", grader_model_api_key="sk-theirs",
    )  # fmt: skip
    assert GraderConfig.from_settings(named).model_api_key == "sk-theirs"
