"""Print the project's requirements from pyproject.toml, one per line, core plus named extras.

The Dockerfile installs these before copying the source, so a code change reuses the layer.
Usage: python scripts/requirements.py [EXTRA ...]
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    found = list(project["dependencies"])
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"no extra {extra!r} in {pyproject}")
        found += optional[extra]
    return found


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    print("\n".join(requirements(root / "pyproject.toml", sys.argv[1:])))
