"""One writer per run folder (reasontrain.run_lock): a second process fails at once naming the holder; a killed
holder leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from reasontrain.run_lock import RunFolderInUse, exclusive_folder, exclusive_folders

HOLD = "import sys, time; from reasontrain.run_lock import exclusive_folder\n" \
       "with exclusive_folder(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)"


def hold_in_child(folder):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_holder_fails_at_once_naming_the_folder_and_pid(tmp_path):
    proc = hold_in_child(tmp_path)
    try:
        start = time.time()
        with pytest.raises(RunFolderInUse) as err:
            with exclusive_folder(tmp_path):
                pass
        assert time.time() - start < 1.0
        assert str(tmp_path) in str(err.value) and f"pid {proc.pid}" in str(err.value)
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    proc = hold_in_child(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with exclusive_folder(tmp_path) as lock:  # the lock file is still there, the lock is not
        assert lock.exists()


def test_the_same_folder_given_twice_is_locked_once(tmp_path):
    with exclusive_folders(tmp_path, tmp_path / ".." / tmp_path.name):
        pass


@pytest.mark.cli
def test_a_second_run_on_a_folder_in_use_is_one_clear_line(tmp_path):
    run_dir = tmp_path / "sft" / "seed0"
    proc = hold_in_child(run_dir)
    try:
        cli = subprocess.run([sys.executable, "-m", "reasontrain.cli", "recipe=sft", f"output_root={tmp_path}"],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert cli.returncode == 2
    assert "is in use by another run" in cli.stderr and f"pid {proc.pid}" in cli.stderr
    assert "Traceback" not in cli.stderr
    assert not any(run_dir.glob("data-*")), "the second run must not have started any stage"
