"""The workers table: each training worker's device and memory, kept fresh by a heartbeat.

A worker that stopped beating for `stale_after` seconds (killed, lost its host) no longer
counts when jobs are placed; its row stays until it beats again or is forgotten on shutdown.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.tables import Worker

DEVICE_KINDS = ("cuda", "cpu")


@dataclass(frozen=True)
class DeviceReport:
    """What a worker says of its device."""

    kind: str  # one of DEVICE_KINDS
    name: str  # "NVIDIA H200", "cpu (16 cores)"
    memory_bytes: int
    bf16: bool


def report_worker(session: Session, name: str, device: DeviceReport) -> None:
    """Insert or refresh worker `name`'s row (its heartbeat); commits."""
    if device.kind not in DEVICE_KINDS:
        raise ValueError(f"unknown device kind {device.kind!r}")
    values = {
        "device_kind": device.kind,
        "device_name": device.name,
        "memory_bytes": device.memory_bytes,
        "bf16": device.bf16,
        "last_seen": time.time(),
    }
    row = session.get(Worker, name)
    if row is None:
        session.add(Worker(name=name, **values))
        try:
            session.commit()
            return
        except IntegrityError:  # its previous beat raced this one in
            session.rollback()
            row = session.get(Worker, name)
            assert row is not None
    for key, value in values.items():
        setattr(row, key, value)
    session.commit()


def forget_worker(session: Session, name: str) -> None:
    """Drop a worker that is shutting down; commits."""
    session.execute(delete(Worker).where(Worker.name == name))
    session.commit()


def live_workers(session: Session, stale_after: float) -> list[Worker]:
    """Workers heard from within `stale_after` seconds, largest memory first."""
    since = time.time() - stale_after
    return list(
        session.scalars(
            select(Worker).where(Worker.last_seen >= since).order_by(Worker.memory_bytes.desc())
        )
    )
