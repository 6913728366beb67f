"""Jobs that need no network do not pay for `import torch` (3.5-4.5 s each on 2 idle cores; issue 11 §6)."""

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
    assert (tmp_path / "scores" / "gopro.csv").is_file()
    assert not _imports_torch("from benchmark.cli import build_parser\nbuild_parser()")  # every --help
    assert not _imports_torch("import benchmark.metrics, benchmark.data, benchmark.deconv")
