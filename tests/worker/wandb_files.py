"""Reading what a W&B run wrote: the records of its `run-<id>.wandb` file.

The file is a LevelDB-style log (a 7-byte `:W&B` header, then 32 KiB blocks of chunks with a
7-byte header each: crc32, length, type) of `wandb_internal_pb2.Record` messages, wandb's own
protocol buffers.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _chunks(data: bytes) -> Iterator[bytes]:
    assert data[:4] == b":W&B", "not a W&B run file"
    position, pending = HEADER, b""
    while position + HEADER <= len(data):
        left = BLOCK - position % BLOCK
        if left < HEADER:  # a block's tail too short for a header is padding
            position += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[position : position + HEADER])
        payload = data[position + HEADER : position + HEADER + length]
        position += HEADER + length
        if kind == FULL:
            yield payload
        elif kind == FIRST:
            pending = payload
        elif kind == MIDDLE:
            pending += payload
        elif kind == LAST:
            yield pending + payload


def records(run_file: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2

    found = []
    for raw in _chunks(run_file.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        found.append(record)
    return found


def history(run_file: Path) -> list[dict[str, Any]]:
    """Each logged step's values (wandb's own `_step`, `_runtime`, ... included)."""
    return [
        {
            item.key or "/".join(item.nested_key): json.loads(item.value_json)
            for item in r.history.item
        }
        for r in records(run_file)
        if r.WhichOneof("record_type") == "history"
    ]


def run_info(run_file: Path) -> dict[str, Any]:
    """The run record: id, project, entity, name, tags and config."""
    [run] = [r.run for r in records(run_file) if r.WhichOneof("record_type") == "run"]
    return {
        "id": run.run_id,
        "project": run.project,
        "entity": run.entity,
        "name": run.display_name,
        "tags": list(run.tags),
        "config": {item.key: json.loads(item.value_json) for item in run.config.update},
    }


def offline_run_files(root: Path) -> list[Path]:
    """The `.wandb` files of the offline runs under `root` (a run's `dir`), oldest first."""
    return sorted(root.glob("wandb/offline-run-*/run-*.wandb"))
