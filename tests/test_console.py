"""What a run prints: each warning once per process, INFO only from rank 0 (reasontrain.console)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

SCRIPT = r"""
import logging, sys, warnings
from reasontrain.console import configure_console, warn_once

warn_once(); warn_once()  # idempotent: one wrapper, not two
logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(levelname)s %(message)s")
configure_console(rank=int(sys.argv[1]))
log = logging.getLogger("reasontrain")
for step in range(50):
    with warnings.catch_warnings():  # what libraries do every step; it resets Python's own "once" memory
        pass
    warnings.warn("collective X is deprecated", FutureWarning)
    warnings.warn(f"step {step % 2} is odd", UserWarning)
warnings.filterwarnings("ignore", message="hidden")
warnings.warn("hidden by the filters", UserWarning)
log.info("an info line")
log.warning("a warning line")
"""


def run(rank: int):
    return subprocess.run([sys.executable, "-c", SCRIPT, str(rank)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={"RANK": str(rank), "PATH": "/usr/bin:/bin"})


def test_each_warning_is_shown_once_per_process_and_filters_still_apply():
    proc = run(0)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("collective X is deprecated") == 1
    assert proc.stderr.count("step 0 is odd") == 1 and proc.stderr.count("step 1 is odd") == 1
    assert "hidden by the filters" not in proc.stderr


def test_rank_zero_prints_info():
    proc = run(0)
    assert "INFO an info line" in proc.stdout and "WARNING a warning line" in proc.stdout


def test_other_ranks_print_only_warnings_and_errors():
    proc = run(1)
    assert proc.returncode == 0, proc.stderr
    assert "an info line" not in proc.stdout
    assert "WARNING a warning line" in proc.stdout
    assert proc.stderr.count("collective X is deprecated") == 1
