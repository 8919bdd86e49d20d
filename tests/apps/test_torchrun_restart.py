"""torchrun --max-restarts: a group restarted after one rank died continues the run from its last.pt and
finishes it as the uninterrupted run does; on the CPU with gloo, two processes."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import FAST, ROOT

pytestmark = pytest.mark.e2e  # torchrun groups that train, die and restart

# main.py, but rank 1 of the first group (TORCHELASTIC_RESTART_COUNT 0) dies by SIGKILL at the end of the first
# epoch whose last.pt is written: torchrun then stops rank 0 and starts the group again, with the same command.
KILLED = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, os.getcwd())
import main
from utils.engine import distributed

barrier, out = distributed.barrier, Path(sys.argv[sys.argv.index("--output-dir") + 1])

def dying_barrier():
    barrier()
    if os.environ["TORCHELASTIC_RESTART_COUNT"] == "0" and distributed.rank() == 1 and (out / "last.pt").exists():
        os.kill(os.getpid(), signal.SIGKILL)

distributed.barrier = dying_barrier
sys.exit(main.main(sys.argv[1:]))
"""


def torchrun(script, *argv, restarts=1):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "--max-restarts", str(restarts), str(script), *FAST, *map(str, argv)]
    return subprocess.run(command, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=300)


def outcome(run):
    metrics = json.loads((run / "metrics.json").read_text())
    return metrics["run"]["best_epoch"], metrics["test"]


def test_a_restarted_group_continues_the_run_and_ends_as_the_uninterrupted_one(tiny_camvid, tmp_path):
    argv = ["--data-dir", tiny_camvid, "--epochs", 2, "--save-every", 0, "--seed", 1]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    script = tmp_path / "killed_main.py"
    script.write_text(KILLED)
    result = torchrun(ROOT / "main.py", *argv, "--output-dir", reference)
    assert result.returncode == 0, result.stderr[-3000:]
    result = torchrun(script, *argv, "--output-dir", killed)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming {killed} after epoch 1 of 2" in result.stdout  # the restarted group took it up
    assert result.stdout.count("best epoch ") == 1  # one final evaluation: one metrics.json, written once
    assert "not an empty folder" not in result.stderr and "connectFullMesh" not in result.stderr
    assert outcome(killed) == outcome(reference)


@pytest.mark.e2e
def test_a_usage_error_under_torchrun_is_rank_0s_one_line_and_exit_2(tiny_camvid):
    """Every rank meets the error; rank 0 alone says it, and the others wait for torchrun to end them, so that rank 0
    is the first to exit, with its line printed and its exit status 2. torchrun then reports the group's failure in
    its own words (ChildFailedError, exit 1), naming rank 0 and exit code 2 as the root cause."""
    result = torchrun(ROOT / "main.py", "--data-dir", tiny_camvid, "--epochs", 1, "--lr", -1, restarts=0)
    assert result.stderr.count("error: --lr -1.0 is not valid") == 1, result.stderr[-3000:]
    cause = result.stderr.split("Root Cause")[-1]
    assert "rank      : 0 (local_rank: 0)" in cause and "exitcode  : 2" in cause, result.stderr[-3000:]
    assert result.returncode != 0
