"""Argument types for the command line: a value out of range is a usage error up front,
never a traceback (or a run that cannot end) later."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

__all__ = ["new_file", "number", "whole_number"]


def whole_number(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an int within ``minimum .. maximum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    parse.__name__ = "whole number"  # what argparse calls it in "invalid ... value"
    return parse


def number(minimum: float, *, above: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite float at least ``minimum`` (or above it, with ``above``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (above and value == minimum):
            raise argparse.ArgumentTypeError(
                f"must be {'above' if above else 'at least'} {minimum:g}, got {text}"
            )
        return value

    parse.__name__ = "number"
    return parse


def new_file(text: str) -> Path:
    """An argparse type: a file to write, in a directory that exists (checked before a run
    that might take a while, not after it)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("a file name can't be empty")
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file name in it")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"the directory {path.parent} does not exist")
    return path
