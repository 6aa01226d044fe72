"""Training queues by device kind and memory tier: `<queue>.<kind>.<tier>`, e.g. `openrft.cuda.48g`.

A worker takes from every tier up to its memory; a job goes to the smallest tier that holds its
estimate, so whoever takes it from there can hold it. Tiers step by 1.5x and 4/3x in turn
(1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24 ... GiB), so a worker offers at least three quarters of its
memory. Jobs placed while no worker had registered go to the plain queue, which every training
worker takes from too.
"""

from __future__ import annotations

from app.workers.memory import GIB

TIERS_GIB: tuple[float, ...] = tuple(sorted(base * 2**k for k in range(12) for base in (1, 1.5)))


def tier_label(tier_gib: float) -> str:
    return f"{tier_gib:g}g"


def served_tier(memory_bytes: int) -> float | None:
    """The largest tier a worker with this much memory takes jobs of; None below the smallest."""
    held = [tier for tier in TIERS_GIB if tier * GIB <= memory_bytes]
    return held[-1] if held else None


def job_tier(needed_bytes: int) -> float | None:
    """The smallest tier that holds a job needing this much; None above the largest."""
    return next((tier for tier in TIERS_GIB if tier * GIB >= needed_bytes), None)


def tier_queue(queue_name: str, device_kind: str, tier_gib: float) -> str:
    return f"{queue_name}.{device_kind}.{tier_label(tier_gib)}"


def worker_queues(queue_name: str, device_kind: str, memory_bytes: int) -> list[str]:
    """The tier queues a training worker takes from, besides the plain and light ones."""
    top = served_tier(memory_bytes)
    if top is None:
        return []
    return [tier_queue(queue_name, device_kind, tier) for tier in TIERS_GIB if tier <= top]
