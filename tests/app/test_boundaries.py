"""The API process never loads torch, wandb, the trainer, or anything from the worker package."""

from __future__ import annotations

import subprocess
import sys


def test_api_process_does_not_import_torch() -> None:
    code = (
        "import sys, app.main, app.cli\n"
        "app.main.create_app()\n"
        "heavy = [m for m in sys.modules if m in ('torch', 'transformers', 'peft', 'wandb') or m.split('.')[0] == 'worker']\n"
        "print(heavy)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "[]"
