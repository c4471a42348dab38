"""Argument checks shared by the Python layer: an integer argument is an int (not a bool, a float or a string)."""
from __future__ import annotations

import numpy as np


def integer(where: str, name: str, value, low: int | None = None, high: int | None = None) -> int:
    """value as an int; TypeError unless it is an integer, ValueError naming the argument outside [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: {name} must be an integer, got {type(value).__name__} {value!r}")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]" if low is not None else f"<= {high}"
        raise ValueError(f"{where}: {name} must be {bounds}, got {v}")
    return v


def path(where: str, name: str, value) -> str:
    """value as a str path; TypeError naming the argument for None, a number or another non-path."""
    import os

    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{where}: {name} must be a path (str or os.PathLike), got {type(value).__name__}")
    return os.fspath(value)
