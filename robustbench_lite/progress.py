"""Progress for long work: a tqdm bar on a terminal, periodic log lines when output is piped.

tqdm draws the bar; on a terminal it redraws in place on stderr. When stderr is not a terminal
(a log file, ``| tee``, CI) the same bar is rendered every ``PIPED_INTERVAL`` seconds as one
ordinary log line through :mod:`logging`, so a long job is never silent and a log never fills
with carriage returns.

Progress is on by default; ``set_enabled(False)`` (the CLI's ``--no-progress``) or the
environment variable ``BENCH_PROGRESS=0`` turns every bar off. Example::

    with progress_bar(total=len(idx), desc="pgd20 linf:0.3", unit="ex") as bar:
        for block in blocks:
            ...
            bar.update(len(block))
            bar.set_postfix_str(f"acc {acc:.1f}%")  # shown at the next redraw
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from typing import Any, Iterator

from tqdm.auto import tqdm

logger = logging.getLogger("robustbench_lite.progress")

PIPED_INTERVAL = 30.0  # seconds between two log lines when stderr is not a terminal
_enabled: bool | None = None


def set_enabled(on: bool) -> None:
    """Turn every progress bar on or off for this process (``--no-progress``)."""
    global _enabled
    _enabled = bool(on)


def enabled() -> bool:
    if _enabled is not None:
        return _enabled
    return os.environ.get("BENCH_PROGRESS", "1").strip().lower() not in ("0", "false", "no", "off")


_on = enabled  # (progress_bar's own parameter is called enabled)


class _LogLines(io.StringIO):
    """A file for tqdm that turns each redraw into one log line (no carriage returns)."""

    def __init__(self, log: logging.Logger) -> None:
        super().__init__()
        self._log = log

    def write(self, text: str) -> int:
        line = text.strip("\r\n \x1b[A")
        if line:
            self._log.info("%s", line)
        return len(text)

    def flush(self) -> None:
        pass


_active: list["Bar"] = []


class Bar(tqdm):
    """tqdm whose postfix waits for the next redraw (so piped output keeps its interval); the
    innermost open bar receives :func:`note` (e.g. AutoAttack's stage inside one block)."""

    def set_postfix_str(self, s: str = "", refresh: bool = False) -> None:
        super().set_postfix_str(s, refresh=refresh)

    def __enter__(self) -> "Bar":
        if not self.disable:  # a disabled bar (a caller that keeps its own) must not swallow notes
            _active.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self in _active:
            _active.remove(self)
        super().__exit__(*exc)

    def note(self, text: str) -> None:
        self.set_postfix_str(text)
        if not self.disable and self._time() - self.last_print_t >= self.mininterval:
            self.refresh()


_where: list[str] = []


@contextlib.contextmanager
def where(label: str) -> Iterator[None]:
    """Name the piece of work running inside (e.g. ``pgd@linf:0.3 block 2``): :func:`note` and
    :func:`stage` prefix their text with it."""
    _where.append(label)
    try:
        yield
    finally:
        _where.pop()


def _prefixed(text: str) -> str:
    return f"{_where[-1]}: {text}" if _where else text


def note(text: str) -> None:
    """Show ``text`` on the innermost open bar that is drawn (redrawn at most every
    ``mininterval``), prefixed with the innermost :func:`where` label."""
    if _active:
        _active[-1].note(_prefixed(text))


def stage(text: str, log: logging.Logger | None = None) -> None:
    """A stage of a long step begins: one log line (INFO, shown by the CLI, even with
    ``--no-progress``) and the same text on the innermost bar."""
    (log or logger).info("%s", _prefixed(text))
    note(text)


def _is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def progress_bar(total: int | float | None = None, desc: str = "", unit: str = "it", *,
                 log: logging.Logger | None = None, enabled: bool = True, **kwargs: Any) -> Bar:
    """A tqdm bar: in place on a terminal, a log line every ``PIPED_INTERVAL`` s otherwise.

    Use it as a context manager (or call ``close()``); ``disable`` follows :func:`enabled` (and
    ``enabled=False`` here: a caller that keeps its own bar)."""
    if not (enabled and _on()):
        return Bar(total=total, desc=desc, unit=unit, disable=True, **kwargs)
    if _is_terminal():
        return Bar(total=total, desc=desc, unit=unit, leave=kwargs.pop("leave", False), dynamic_ncols=True, **kwargs)
    kwargs.pop("leave", None)
    return Bar(total=total, desc=desc, unit=unit, file=_LogLines(log or logger), mininterval=PIPED_INTERVAL,
                maxinterval=PIPED_INTERVAL, ascii=True, ncols=100, leave=True, **kwargs)
