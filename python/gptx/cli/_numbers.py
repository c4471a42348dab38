"""argparse types for numeric flags: a negative, NaN or out-of-range value is a usage error naming the flag."""
import argparse
import math


def integer(low: int):
    """An int >= low (argparse prints 'argument --flag: ...' and exits 2 otherwise)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {v}")
        return v

    parse.__name__ = f"integer >= {low}"
    return parse


def number(low: float, high: float | None = None, low_open: bool = False, high_open: bool = False):
    """A finite float in [low, high] (either end open when asked; high None: no upper bound)."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        ok = math.isfinite(v) and (v > low if low_open else v >= low)
        if high is not None:
            ok = ok and (v < high if high_open else v <= high)
        if not ok:
            lo, hi = ("(" if low_open else "[") + f"{low:g}", "inf)" if high is None else \
                f"{high:g}" + (")" if high_open else "]")
            raise argparse.ArgumentTypeError(f"must be a finite number in {lo}, {hi}, got {text}")
        return v

    parse.__name__ = "number"
    return parse
