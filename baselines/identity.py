"""The blurred input itself, scored and timed like a method: the floor every other row must beat."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from benchmark.registry import Method, register


def restore_identity(model: None, blurred: np.ndarray, options: Mapping[str, Any]) -> np.ndarray:
    return blurred.copy()


register(Method(
    name="blurred",
    display_name="Blurred input",
    kind="classical",
    summary="No restoration: the blurred input scored against the sharp image (a reference row beyond the paper).",
    restore=restore_identity,
))
