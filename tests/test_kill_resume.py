"""The kill/resume campaign (issue 10): a training killed with SIGKILL at seeded random points, and in
the middle of writing a checkpoint, resumes each time and ends with the weights and logs of a run that
was never interrupted, bit for bit."""

import os
import random
import signal
import subprocess
import sys
import time

import torch
from training_run import same_weights as _same
from training_run import train_cmd as _train_cmd

# Runs `deblurbench train` with torch.save wrapped: the save numbered KILL_AT_SAVE writes half a file
# under the temporary name and then the process SIGKILLs itself, i.e. dies mid-write.
KILL_DURING_SAVE = """
import os, signal, sys
import torch
import benchmark.train
kill_at, count, real_save = int(os.environ["KILL_AT_SAVE"]), [0], torch.save
def save(obj, f, *args, **kwargs):
    count[0] += 1
    if count[0] == kill_at:
        with open(f, "wb") as half:
            half.write(b"PK\\x03\\x04 half a checkpoint")
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)
benchmark.train.torch.save = save
from benchmark.cli import main
sys.argv = ["deblurbench", *sys.argv[1:]]
raise SystemExit(main())
"""


def _killed_during_save(cmd, kill_at_save):
    """Run ``cmd`` (a `python -m benchmark.cli train ...` line) so that it dies inside its Nth torch.save."""
    wrapped = [sys.executable, "-c", KILL_DURING_SAVE, *cmd[3:]]
    result = subprocess.run(wrapped, env={**os.environ, "KILL_AT_SAVE": str(kill_at_save)})
    assert result.returncode == -signal.SIGKILL, "the run ended before the save it was to die in"


def _killed_at_random(cmd, out, rng):
    """Start ``cmd``, wait until it has a checkpoint, then SIGKILL it after a random further delay."""
    proc = subprocess.Popen(cmd, start_new_session=True)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 1.5))
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_sigkill_campaign_resumes_to_identical_weights_and_logs(tiny_gopro, tiny_cache, straight, tmp_path):
    rng = random.Random(20261128)
    out = tmp_path / "campaign"
    cmd = _train_cmd(tiny_gopro, tiny_cache, out, "--resume")
    # The schedule has 16 iterations and a checkpoint every 2: saves 1-8 are checkpoints, 9 the weights.
    _killed_during_save(cmd, kill_at_save=2)  # dies writing iteration 4's checkpoint; iteration 2's stays
    assert list(out.glob(".checkpoint.pt.tmp-*")) and torch.load(out / "checkpoint.pt", weights_only=True)
    _killed_at_random(cmd, out, rng)
    _killed_during_save(cmd, kill_at_save=1)  # dies writing the first checkpoint after the resume
    _killed_at_random(cmd, out, rng)
    subprocess.run(cmd, check=True)

    assert _same(torch.load(out / "model.pt", weights_only=True), torch.load(straight / "model.pt", weights_only=True))
    assert not list(out.glob(".*.tmp-*"))  # the half-written checkpoints of the killed runs were swept
    for log in ("log.csv", "val.csv"):  # the resumed run's logs read as one run, loss for loss
        assert (out / log).read_text() == (straight / log).read_text()
