"""Jobs that need no network do not pay for `import torch` (3.5-4.5 s each on 2 idle cores; issue 11 §6)."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _imports_torch(code: str) -> bool:
    probe = f"import sys\n{code}\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1] == "True"


def test_scoring_and_the_command_line_import_no_torch(tiny_gopro, tmp_path):
    from benchmark.data import gopro_pairs, read_image, write_image

    restored = tmp_path / "restored" / "gopro"
    for p in gopro_pairs(tiny_gopro, "test"):  # the blurred inputs stand in for restored images
        write_image(restored / p.seq / p.blurred.name, read_image(p.blurred))
    score = (f"from benchmark.cli import main\nassert main(['score', '--gopro', {str(tiny_gopro)!r}, '--restored', "
             f"{str(tmp_path / 'restored')!r}, '--out', {str(tmp_path / 'scores')!r}, '--quiet']) == 0")
    assert not _imports_torch(score)
    assert (tmp_path / "scores" / "gopro.csv").is_file() and (tmp_path / "scores" / "shard.json").is_file()
    assert not _imports_torch("from benchmark.cli import build_parser\nbuild_parser()")  # every --help
    assert not _imports_torch("import benchmark.metrics, benchmark.data, benchmark.deconv")


def test_listing_the_methods_and_releases_imports_no_torch():
    listing = ("from benchmark import registry, releases, timing\n"
               "methods = registry.available()\n"
               "assert {'msr2b', 'deblurgan', 'deepdeblur', 'nafnet', 'sun', 'pan'} <= {m.name for m in methods}\n"
               "assert [r.method for r in releases.RELEASES.values()]")
    assert not _imports_torch(listing)
    # and the lazy names resolve: a network and its loss build once asked for
    assert _imports_torch("from benchmark import registry\nm = registry.get('nafnet')\n"
                          "m.build(m.options({'width': 8, 'enc_blk_nums': [1], 'dec_blk_nums': [1]}))")


def test_parsing_the_workflow_imports_no_torch(tmp_path):
    """`snakemake -n` of the paper profile (its releases and every method listed): `python -X importtime`
    names every module the parse imported."""
    cmd = [sys.executable, "-X", "importtime", "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
           str(tmp_path), "-n", "--config", "profile=paper", "device=cpu"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "snakemake" in imported and "benchmark.registry" in imported
    assert not {m for m in imported if m == "torch" or m.startswith("torch.")}


def test_jobs_that_run_no_network_import_no_torch(smoke_run, tiny_gopro, tmp_path):
    """The report's three jobs on the smoke run's results, and a classical method's restore and time."""
    results, _ = smoke_run
    config = results / "config.yaml"
    commands = {
        "tables": ["tables", "--config", config, "--results", results, "--out", tmp_path / "tables"],
        "figures": ["figures", "--config", config, "--results", results, "--out", tmp_path / "figures"],
        "report": ["report", "--config", config, "--results", results, "--out", tmp_path / "report" / "index.html"],
        "restore": ["restore", "--config", config, "--method", "wiener", "--gopro", tiny_gopro,
                    "--out", tmp_path / "restored", "--quiet", "--threads", "1"],
        "time": ["time", "--config", config, "--method", "richardson-lucy", "--width", "40", "--height", "32",
                 "--runs", "2", "--warmup", "0", "--out", tmp_path / "time.json", "--threads", "1"],
    }
    for name, argv in commands.items():
        code = f"from benchmark.cli import main\nassert main({[str(a) for a in argv]!r}) == 0"
        assert not _imports_torch(code), f"`deblurbench {name}` imported torch"
    assert (tmp_path / "report" / "index.html").is_file() and (tmp_path / "restored" / "gopro").is_dir()
    timing = json.loads((tmp_path / "time.json").read_text())
    assert timing["device"] == "cpu" and timing["clock"] == "wall" and "torch" not in timing
