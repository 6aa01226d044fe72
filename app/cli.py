"""`openrft`: serve (API + embedded worker and inference), api, worker, inference, migrate, keys,
projects."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from app.base_models import PullError, pull_hub_model, push_base_model
from app.db import session_scope
from app.keys.service import (
    DEFAULT_PROJECT,
    GRADER_PROJECT,
    add_key,
    create_key,
    get_or_create_project,
    has_any_key,
    list_keys,
    revoke_key,
)
from app.migrate import SchemaOutOfDate, check_schema, upgrade
from app.observability.logs import configure_logging, logging_config
from app.queue import light_queue
from app.settings import Settings, get_settings
from app.tables import Project


def _worker_command(settings: Settings, name: str) -> list[str]:
    """A training worker: one job at a time; between jobs it also takes light tasks."""
    return [
        sys.executable, "-m", "celery", "-A", "worker.celery_app:app", "worker",
        "--pool=solo", "--concurrency=1", "--loglevel=INFO",
        "-Q", f"{settings.queue_name},{light_queue(settings)}", "-n", f"{name}@%h",
    ]  # fmt: skip


def _light_worker_command(settings: Settings, name: str) -> list[str]:
    """A light worker: file checks (and other short tasks) only, a few at a time."""
    return [
        sys.executable, "-m", "celery", "-A", "worker.celery_app:app", "worker",
        "--pool=threads", "--concurrency=4", "--loglevel=INFO",
        "-Q", light_queue(settings), "-n", f"{name}@%h",
    ]  # fmt: skip


def _inference_command(settings: Settings) -> list[str]:
    port = str(settings.inference_port)
    return [sys.executable, "-m", "app.cli", "inference", "--host", "127.0.0.1", "--port", port]


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this child when `serve` dies, however it dies.

    uvicorn re-raises the signal that stopped it, so `serve` may exit without running cleanup.
    """
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_child(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A child process of `serve` that ends when `serve` ends."""
    return subprocess.Popen(command, preexec_fn=_die_with_parent, env=env)


def _worker_environment(settings: Settings) -> dict[str, str]:
    """Model graders call this server's own endpoint by default: tell the worker where it
    listens and give it a key when the operator set none."""
    env = dict(os.environ)
    if (
        not settings.grader_model_base_url
        and not settings.grader_model_api_key
        and not settings.api_key
    ):
        with session_scope(settings) as session:
            env["OPENRFT_GRADER_MODEL_API_KEY"] = create_key(session, GRADER_PROJECT)
    return env


def _bootstrap_key(settings: Settings) -> str | None:
    """Register OPENRFT_API_KEY, or make a first key on a new install; returns a key to show."""
    with session_scope(settings) as session:
        if settings.api_key:
            add_key(session, get_or_create_project(session, DEFAULT_PROJECT), settings.api_key)
            return None
        if not has_any_key(session):
            return create_key(session, DEFAULT_PROJECT)
    return None


def _run_api(settings: Settings, host: str, port: int) -> None:
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from app.api_processes import serve_in_processes

    if settings.api_workers > 1:
        # each process counts its own requests; Prometheus' multiprocess mode sums them
        metrics_dir = settings.resolved_data_dir / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    config = uvicorn.Config(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        log_config=logging_config(settings.log_format),
        log_level="info",
    )
    if settings.api_workers > 1:
        serve_in_processes(config, settings.api_workers)
    else:
        server = uvicorn.Server(config)
        try:
            server.run()
        except KeyboardInterrupt:  # uvicorn raises the Ctrl-C it stopped on again once stopped
            pass
        if not server.started:
            sys.exit(STARTUP_FAILURE)


def _run_inference(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    configure_logging(settings.log_format, servers=True)
    uvicorn.run(
        "worker.inference.server:create_app",
        factory=True,
        host=host,
        port=port,
        log_config=None,
        log_level="info",
    )


def _stop(child: subprocess.Popen[bytes]) -> None:
    child.terminate()
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()


def serve(settings: Settings, host: str, port: int) -> None:
    upgrade(settings)
    new_key = _bootstrap_key(settings)
    worker_env = _worker_environment(settings)
    children = [
        start_child(_worker_command(settings, "openrft-embedded"), worker_env),
        start_child(_light_worker_command(settings, "openrft-embedded-light"), worker_env),
    ]
    # an OPENRFT_INFERENCE_URL names an inference process run elsewhere
    if settings.inference_url is None:
        children.append(start_child(_inference_command(settings)))
    print(f"OpenRFT API on http://{host}:{port}/v1", flush=True)
    if new_key:
        print(f"API key (shown once; keep it): {new_key}", flush=True)
    elif not settings.api_key:
        print(
            "Use your existing API key, or make one: openrft keys create --project default",
            flush=True,
        )
    try:
        _run_api(settings, host, port)
    finally:
        for child in children:
            _stop(child)


def _keys_command(
    settings: Settings, args: argparse.Namespace, parser: argparse.ArgumentParser
) -> None:
    with session_scope(settings) as session:
        if args.keys_command == "create":
            print(create_key(session, args.project))
        elif args.keys_command == "list":
            for key in list_keys(session):
                if args.project is None or key.project_name == args.project:
                    print(f"{key.id}\t{key.project_name}\t{key.prefix}...\t{key.created_at}")
        elif not revoke_key(session, args.key_id):
            parser.exit(2, f"openrft keys revoke: no key {args.key_id!r} (see openrft keys list)\n")
        else:
            print(f"revoked {args.key_id}")


def _models_command(
    settings: Settings, args: argparse.Namespace, parser: argparse.ArgumentParser
) -> None:
    if args.models_command == "pull":
        try:
            folder = pull_hub_model(args.hub_id)
        except PullError as error:
            parser.exit(2, f"openrft models pull: {error}\n")
        print(f"downloaded {args.hub_id} to {folder}; offered as a base model by that id")
        return
    try:
        count = push_base_model(settings, args.name, args.directory)
    except ValueError as error:
        parser.exit(2, f"openrft models push: {error}\n")
    print(f"stored {args.name} ({count} files); offered as a base model")


def main(argv: list[str] | None = None) -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="openrft", description="Self-hosted reinforcement fine-tuning"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("serve", "API and one embedded worker"), ("api", "the API alone")):
        command = commands.add_parser(name, help=text)
        command.add_argument("--host", default=settings.host)
        command.add_argument("--port", type=int, default=settings.port)
        if name == "api":
            command.add_argument(
                "--migrate",
                action="store_true",
                help="upgrade the schema first (one replica only; else run `openrft migrate`)",
            )
    worker = commands.add_parser("worker", help="a worker alone")
    worker.add_argument(
        "--light",
        action="store_true",
        help="take only light tasks (a new job's file checks), never training",
    )
    inference = commands.add_parser("inference", help="the inference process alone")
    inference.add_argument("--host", default="127.0.0.1")
    inference.add_argument("--port", type=int, default=settings.inference_port)
    commands.add_parser("migrate", help="upgrade the database schema")
    models = commands.add_parser("models", help="base models").add_subparsers(
        dest="models_command", required=True
    )
    push = models.add_parser("push", help="store a Hugging Face model directory as a base model")
    push.add_argument("name")
    push.add_argument("directory", type=Path)
    models.add_parser(
        "pull", help="download a model from the Hugging Face Hub into the local cache"
    ).add_argument("hub_id", help="org/name, e.g. Qwen/Qwen2.5-0.5B-Instruct")
    keys = commands.add_parser("keys", help="API keys").add_subparsers(
        dest="keys_command", required=True
    )
    keys.add_parser("create", help="print a new API key").add_argument(
        "--project", default=DEFAULT_PROJECT
    )
    keys.add_parser("list", help="each key's id, project and first characters").add_argument(
        "--project", default=None, help="only this project's keys (its name)"
    )
    keys.add_parser(
        "revoke", help="delete a key; it is refused from the next request on"
    ).add_argument("key_id")
    projects = commands.add_parser("projects", help="projects").add_subparsers(
        dest="projects_command", required=True
    )
    # the ids other projects name when sharing a checkpoint with one
    projects.add_parser("list", help="print each project's id and name")
    args = parser.parse_args(argv)
    if args.command in ("serve", "api"):
        # this process and its children read where the API listens (model graders call it)
        os.environ.update(OPENRFT_HOST=args.host, OPENRFT_PORT=str(args.port))
        get_settings.cache_clear()
        settings = get_settings()

    if args.command == "serve":
        serve(settings, args.host, args.port)
    elif args.command == "api":
        if args.migrate:
            upgrade(settings)
        try:
            check_schema(settings)
        except SchemaOutOfDate as error:
            parser.exit(2, f"openrft api: {error} (or start with --migrate)\n")
        _bootstrap_key(settings)
        _run_api(settings, args.host, args.port)
    elif args.command == "worker":
        command = (
            _light_worker_command(settings, "openrft-light")
            if args.light
            else _worker_command(settings, "openrft-worker")
        )
        os.execv(command[0], command)
    elif args.command == "inference":
        _run_inference(settings, args.host, args.port)
    elif args.command == "models":
        _models_command(settings, args, parser)
    elif args.command == "migrate":
        upgrade(settings)
        print("database is at the newest schema")
    elif args.command == "keys":
        upgrade(settings)
        _keys_command(settings, args, parser)
    elif args.command == "projects":
        upgrade(settings)
        with session_scope(settings) as session:
            for project in session.scalars(select(Project).order_by(Project.created_at)):
                print(f"{project.id}\t{project.name}")


if __name__ == "__main__":
    main()
