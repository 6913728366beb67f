"""Verify a downloaded dataset tree against its known layout and counts, and say what is wrong.

GOPRO_Large: 22 training sequences with 2103 pairs and 11 test sequences with 1111 pairs (the
per-sequence counts below, from SRN-Deblur's data list and DeblurGAN issue #106). Köhler et al.:
4 images x 12 camera shakes = 48 blurry images, 199 ground-truth frames per shot except the ones
listed. ``expected=None`` checks the structure only (every blurred image has its sharp partner),
which is what the synthetic trees of the quick and smoke profiles get.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.files import write_text_atomic

GOPRO_COUNTS: dict[str, dict[str, int]] = {
    "train": {
        "GOPR0372_07_00": 100, "GOPR0372_07_01": 75, "GOPR0374_11_00": 150, "GOPR0374_11_01": 80,
        "GOPR0374_11_02": 100, "GOPR0374_11_03": 48, "GOPR0378_13_00": 110, "GOPR0379_11_00": 100,
        "GOPR0380_11_00": 60, "GOPR0384_11_01": 100, "GOPR0384_11_02": 100, "GOPR0384_11_03": 100,
        "GOPR0384_11_04": 100, "GOPR0385_11_00": 100, "GOPR0386_11_00": 100, "GOPR0477_11_00": 80,
        "GOPR0857_11_00": 100, "GOPR0868_11_01": 100, "GOPR0868_11_02": 100, "GOPR0871_11_01": 100,
        "GOPR0881_11_00": 100, "GOPR0884_11_00": 100,
    },
    "test": {
        "GOPR0384_11_00": 100, "GOPR0384_11_05": 100, "GOPR0385_11_01": 100, "GOPR0396_11_00": 100,
        "GOPR0410_11_00": 134, "GOPR0854_11_00": 100, "GOPR0862_11_00": 77, "GOPR0868_11_00": 100,
        "GOPR0869_11_00": 100, "GOPR0871_11_00": 100, "GOPR0881_11_01": 100,
    },
}
KOHLER_FRAMES: dict[tuple[int, int], int] = {
    (i, j): 199 for i in range(1, 5) for j in range(1, 13)
} | {(2, 11): 200, (1, 10): 198, (1, 12): 198, (2, 10): 198, (3, 7): 198, (3, 12): 198, (4, 12): 198}
GOPRO_FOLDERS = ("blur", "blur_gamma", "sharp")


@dataclass
class VerifyReport:
    dataset: str
    root: Path
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    counted: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.wrong)

    def format_report(self) -> str:
        lines = [f"{self.dataset} at {self.root}: " + ("OK" if self.ok else "PROBLEMS FOUND")]
        lines += [f"  {k}: {v}" for k, v in self.counted.items()]
        for title, items in (("missing", self.missing), ("unexpected", self.extra), ("wrong", self.wrong)):
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines += [f"    {item}" for item in items[:50]]
                if len(items) > 50:
                    lines.append(f"    ... and {len(items) - 50} more")
        return "\n".join(lines)


def _pngs(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.png")} if folder.is_dir() else set()


def verify_gopro(root: Path, expected: Mapping[str, Mapping[str, int]] | None = GOPRO_COUNTS) -> VerifyReport:
    root = Path(root)
    report = VerifyReport("GOPRO", root)
    for split in ("train", "test"):
        split_dir = root / split
        found = sorted(p.name for p in split_dir.iterdir() if p.is_dir()) if split_dir.is_dir() else []
        if not found:
            report.missing.append(f"{split}/ (no sequences)")
            continue
        wanted = expected.get(split, {}) if expected is not None else {}
        if expected is not None:
            report.missing += [f"{split}/{s}" for s in sorted(set(wanted) - set(found))]
            report.extra += [f"{split}/{s}" for s in found if s not in wanted]
        pairs = 0
        for seq in found:
            names = {f: _pngs(split_dir / seq / f) for f in GOPRO_FOLDERS}
            for folder in ("blur", "blur_gamma"):
                report.missing += [f"{split}/{seq}/sharp/{n}" for n in sorted(names[folder] - names["sharp"])]
            report.missing += [f"{split}/{seq}/blur/{n}" for n in sorted(names["sharp"] - names["blur"])]
            pairs += len(names["sharp"] & names["blur"])
            if seq in wanted and len(names["sharp"]) != wanted[seq]:
                report.wrong.append(f"{split}/{seq}: {len(names['sharp'])} pairs, expected {wanted[seq]}")
        report.counted[f"{split} sequences"] = len(found)
        report.counted[f"{split} pairs"] = pairs
    return report


_BLURRY = re.compile(r"Blurry(\d+)_(\d+)\.png")


def verify_kohler(root: Path, expected: Mapping[tuple[int, int], int] | None = KOHLER_FRAMES) -> VerifyReport:
    root = Path(root)
    report = VerifyReport("Köhler", root)
    blurry_dir = root / "BlurryImages"
    shots = {}
    for p in sorted(blurry_dir.glob("*.png")) if blurry_dir.is_dir() else []:
        m = _BLURRY.fullmatch(p.name)
        if m is None:
            report.extra.append(f"BlurryImages/{p.name}")
        else:
            shots[(int(m[1]), int(m[2]))] = p
    wanted = expected if expected is not None else dict.fromkeys(shots, None)
    report.missing += [f"BlurryImages/Blurry{i}_{j}.png" for i, j in sorted(set(wanted) - set(shots))]
    report.extra += [f"BlurryImages/Blurry{i}_{j}.png" for i, j in sorted(set(shots) - set(wanted))]
    frames_total = 0
    for (i, j) in sorted(shots):
        frames = list((root / f"Image{i}" / f"Kernel{j}").glob(f"GroundTruth{i}_{j}_*.png"))
        frames_total += len(frames)
        if not frames:
            report.missing.append(f"Image{i}/Kernel{j}/GroundTruth{i}_{j}_*.png (no ground-truth frames)")
        elif wanted.get((i, j)) is not None and len(frames) != wanted[(i, j)]:
            report.wrong.append(f"Image{i}/Kernel{j}: {len(frames)} frames, expected {wanted[(i, j)]}")
    report.counted = {"blurry images": len(shots), "ground-truth frames": frames_total}
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=("gopro", "kohler", "hide", "realblur"),
                        help="which layout to check")
    parser.add_argument("--root", type=Path, required=True, help="dataset root")
    parser.add_argument("--structure-only", action="store_true", help="check the layout, not the known counts")
    parser.add_argument("--out", type=Path, help="write the report here (only when the tree is OK)")


def run(args: argparse.Namespace) -> int:
    if not args.root.is_dir():
        raise ValueError(f"--root {args.root}: no such folder; fetch the dataset first (deblurbench fetch "
                         f"{args.dataset} --root {args.root})")
    if args.dataset in ("hide", "realblur"):  # the generalisation test sets (benchmark/testsets.py)
        from benchmark.testsets import verify_testset

        report = verify_testset(args.dataset, args.root, "structure" if args.structure_only else "counts")
    else:
        verify = verify_gopro if args.dataset == "gopro" else verify_kohler
        report = verify(args.root, None) if args.structure_only else verify(args.root)
    text = report.format_report()
    print(text)
    if not report.ok:
        print(f"deblurbench prepare: error: {args.root}: the {report.dataset} tree does not match its known layout "
              "(the problems are listed above); fetch it again or fix it", file=sys.stderr)
        return 2
    if args.out:
        write_text_atomic(args.out, text + "\n")
    return 0
