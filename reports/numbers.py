"""How the report writes numbers and names: enough decimals that a difference the data resolve is visible,
and a method's short name for charts and compact tables.

A PSNR shows 2 decimals and an SSIM 3 unless that would hide something: an interval that excludes zero
printed as "-0.000 [-0.001, -0.000]", or a value below the blurred input's printed equal to it. Then
decimals are added, up to :data:`MAX_DECIMALS`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

MAX_DECIMALS = 6


def base_decimals(metric: str) -> int:
    """2 for PSNR (dB) and times, 3 for SSIM-like scores in [0, 1]."""
    return 3 if "ssim" in metric else 2


def _finite(*values: float | None) -> bool:
    return all(v is not None and not (isinstance(v, float) and math.isnan(v)) for v in values)


def interval_decimals(estimate: float, low: float, high: float, base: int) -> int:
    """Decimals at which the estimate is non-zero and an interval that excludes zero shows both ends non-zero."""
    d = base
    if not _finite(estimate):
        return d
    excludes_zero = _finite(low, high) and (low > 0 or high < 0)
    while d < MAX_DECIMALS and ((estimate != 0 and round(estimate, d) == 0)
                                or (excludes_zero and (round(low, d) == 0 or round(high, d) == 0))):
        d += 1
    return d


def column_decimals(values: Iterable[float | None], reference: float | None, base: int) -> int:
    """Decimals at which every value that differs from ``reference`` (the blurred input's) prints differently."""
    values = [v for v in values if _finite(v)]
    d = base
    if not _finite(reference):
        return d
    while d < min(MAX_DECIMALS, base + 3) and any(v != reference and round(v, d) == round(reference, d)
                                                 for v in values):
        d += 1
    return d


def number(value: float | None, decimals: int, *, sign: bool = False) -> str:
    """``value`` at ``decimals``; "–" for a missing value; never "-0.000"."""
    if not _finite(value):
        return "–"
    text = f"{value:+.{decimals}f}" if sign else f"{value:.{decimals}f}"
    if float(text) == 0:  # -0.000 and +0.000 read as a sign the data do not have
        text = f"{0:.{decimals}f}"
    return text.replace("-", "−")


def interval(estimate: float, low: float, high: float, base: int) -> tuple[str, str]:
    """(estimate, "[low, high]") with the decimals of :func:`interval_decimals`."""
    d = interval_decimals(estimate, low, high, base)
    return number(estimate, d, sign=True), f"[{number(low, d, sign=True)}, {number(high, d, sign=True)}]"


def short_name(display_name: str) -> str:
    """A method's name in a chart or compact table: its row label up to the explanation (a stand-in's label
    explains itself in the full tables)."""
    return display_name.partition(":")[0].strip()
