"""Stand-ins for gradekit.run.ray_executor.node_main, run by a Ray node's fork server in the
tests of test_ray.py (so they live in an importable module, on the nodes' PYTHONPATH)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def hanging_main(job_file: str, log_file: str, environ: dict, cwd: str) -> None:
    """Hangs on ``hang.ipynb`` (with a child of its own that must die too); grades the others."""
    from gradekit.run.ray_executor import die_with_parent
    from gradekit.run.worker import detach, main
    detach(log_file, environ, cwd)
    die_with_parent()
    if "hang.ipynb" in Path(job_file).read_text():
        child = subprocess.Popen(["sleep", "600"])
        Path(os.environ["GK_TEST_PIDFILE"]).write_text(f"{os.getpid()} {child.pid}")
        time.sleep(600)
    sys.exit(main([job_file]))
