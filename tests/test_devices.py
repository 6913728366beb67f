"""The GPU slot pool (benchmark/devices.py) under Snakemake: 4 simulated devices, 6 GPU jobs under
`--resources gpu=4`, started the way the workflow starts them (`DEBLURBENCH_GPU_SLOT=1`). Each fake job
records (start, end, device) and sleeps; one is SIGKILLed while it holds its slot, and its slot must
serve a later job."""

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmark import devices

REPO = Path(__file__).resolve().parents[1]

FAKE_JOB = r"""
import json, os, signal, sys, time
from benchmark import devices
devices.claim_if_asked()  # what `deblurbench` does first
out, name = sys.argv[1], sys.argv[2]
dev = os.environ["DEBLURBENCH_DEVICE"]
assert os.environ["CUDA_VISIBLE_DEVICES"] == dev
start = time.time()
if name == "job0":  # crashes while holding its slot
    time.sleep(0.5)
    with open(os.path.join(out, "job0.killed"), "w") as f:
        json.dump({"device": dev, "start": start, "end": time.time()}, f)
    os.kill(os.getpid(), signal.SIGKILL)
time.sleep(2.0)
with open(os.path.join(out, name + ".json"), "w") as f:
    json.dump({"device": dev, "start": start, "end": time.time()}, f)
"""

SNAKEFILE = """
rule all:
    input: expand("out/job{i}.json", i=range(6))

rule gpu_job:
    output: "out/job{i}.json"
    priority: lambda w: 10 if w.i == "0" else 0
    resources: gpu=1
    shell: "DEBLURBENCH_GPU_SLOT=1 {PY:q} fake_job.py out job{wildcards.i}"  # as rules/common.smk's on_gpu()
"""


def test_visible_devices_sources():
    assert devices.visible_devices({"DEBLURBENCH_VISIBLE_DEVICES": "0,1", "CUDA_VISIBLE_DEVICES": "3"}) == ["0", "1"]
    assert devices.visible_devices({"CUDA_VISIBLE_DEVICES": "GPU-a, GPU-b"}) == ["GPU-a", "GPU-b"]
    assert devices.visible_devices({"CUDA_VISIBLE_DEVICES": ""}) == []


def test_slot_is_exclusive_and_freed_by_process_death(tmp_path):
    first, fd = devices.acquire(["0", "1"], tmp_path)
    second, fd2 = devices.acquire(["0", "1"], tmp_path)
    assert {first, second} == {"0", "1"}
    try:
        devices.acquire(["0", "1"], tmp_path, timeout_s=0.2)
        raise AssertionError("a third job got one of two slots")
    except TimeoutError:
        pass
    os.close(fd)
    assert devices.acquire(["0", "1"], tmp_path)[0] == first


def test_no_device_and_slurm_pass_through(tmp_path):
    code = "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES'), os.environ['DEBLURBENCH_DEVICE'] or '-')"
    base = {**os.environ, "PYTHONPATH": str(REPO), "DEBLURBENCH_SLOT_DIR": str(tmp_path)}
    base.pop("DEBLURBENCH_VISIBLE_DEVICES", None)
    slurm = {**base, "SLURM_JOB_ID": "7", "CUDA_VISIBLE_DEVICES": "2"}
    out = subprocess.run([sys.executable, "-m", "benchmark.devices", "--", sys.executable, "-c", code], env=slurm,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["2", "2"]  # SLURM's own assignment, untouched, and no lock taken
    assert not list(tmp_path.iterdir())
    none = {**base, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-m", "benchmark.devices", "--", sys.executable, "-c", code], env=none,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["-"]  # nothing visible: no device chosen, the command runs as is


def test_six_jobs_on_four_devices_one_crash(tmp_path):
    (tmp_path / "Snakefile").write_text(f"PY = {sys.executable!r}\n" + SNAKEFILE)
    (tmp_path / "fake_job.py").write_text(FAKE_JOB)
    (tmp_path / "out").mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "DEBLURBENCH_VISIBLE_DEVICES": "0,1,2,3",
           "DEBLURBENCH_SLOT_DIR": str(tmp_path / "slots")}
    env.pop("SLURM_JOB_ID", None)
    run = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "6", "--resources", "gpu=4", "--keep-going",
                          "--directory", str(tmp_path), "-s", str(tmp_path / "Snakefile")],
                         env=env, capture_output=True, text=True)
    assert run.returncode != 0  # job0 was killed
    crashed = json.loads((tmp_path / "out/job0.killed").read_text())
    jobs = [json.loads((tmp_path / f"out/job{i}.json").read_text()) for i in range(1, 6)]
    events = sorted([(j["start"], 1, j["device"]) for j in [crashed, *jobs]]
                    + [(j["end"], -1, j["device"]) for j in [crashed, *jobs]], key=lambda e: (e[0], e[1]))
    running, busy, peak = 0, set(), 0
    for _, step, device in events:
        if step == 1:
            assert device not in busy, f"two jobs at once on device {device}"
            busy.add(device)
        else:
            busy.discard(device)
        running += step
        peak = max(peak, running)
    assert 2 <= peak <= 4, peak
    # The killed job never released its lock itself; a job that started after its death got that device.
    later = [j for j in jobs if j["start"] > crashed["end"]]
    assert crashed["device"] in {j["device"] for j in later}, (crashed, jobs)


def test_deblurbench_takes_a_slot_when_the_workflow_asks(monkeypatch, tmp_path, capsys):
    from benchmark.cli import main

    monkeypatch.setenv("DEBLURBENCH_GPU_SLOT", "1")
    monkeypatch.setenv("DEBLURBENCH_VISIBLE_DEVICES", "3,5")
    monkeypatch.setenv("DEBLURBENCH_SLOT_DIR", str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("DEBLURBENCH_DEVICE", "")  # restored afterwards
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    held, fd = devices.acquire(["3"], tmp_path)  # another job holds device 3
    assert main(["methods", "--json"]) == 0
    capsys.readouterr()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == os.environ["DEBLURBENCH_DEVICE"] == "5"
    assert "DEBLURBENCH_GPU_SLOT" not in os.environ  # not passed on to children
    os.close(fd)
