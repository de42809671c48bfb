"""Which kernels the protocol core runs: the compiled ones when they were built, else Python.

`fastws.protocol._speedups` (C, built by `pip install` where a compiler and Python's headers
are found; see setup.py) implements a few hot functions whose pure-Python twins live beside
their callers (`mask._xor_int`, `frames.lone_frame`, and `fastws.message._MessageBase` one
layer up); the two give the same result for every input (tests/protocol/test_speedups.py). Set FASTWS_NO_SPEEDUPS=1 to run the pure-Python ones
even where the compiled module exists (the suite runs both).
"""

from __future__ import annotations

import os
from types import ModuleType

__all__ = ["speedups"]

speedups: ModuleType | None = None
if not os.environ.get("FASTWS_NO_SPEEDUPS"):
    try:
        from . import _speedups as speedups
    except ImportError:  # not built here: no compiler or headers at install time
        speedups = None
