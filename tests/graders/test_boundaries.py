from __future__ import annotations

import subprocess
import sys


def test_grader_engine_imports_no_web_framework_queue_or_torch() -> None:
    script = (
        "import sys, app.graders, app.graders.model_graders, app.graders.embeddings\n"
        "print(sorted(m for m in ('fastapi', 'celery', 'torch') if m in sys.modules))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "[]"
