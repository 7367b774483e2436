"""The one exception type for a user's mistake.

The CLI turns a :class:`BenchError` into one sentence on stderr and exit code 2; anything else is a
bug and keeps its traceback.
"""
from __future__ import annotations


class BenchError(ValueError):
    """A user's mistake (bad file, unknown name, bad value), stated in one clear sentence."""
