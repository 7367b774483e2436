"""Files: atomic writes, hashing and the one output-path check of every command (torch-free).

Outputs are written via a temporary file and a rename, so a reader never sees half a file and a
failed run leaves what was there before; :func:`check_output_path` refuses, before any long work,
an output path that cannot be written (one sentence, :class:`BenchError`).
"""
from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .errors import BenchError


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def check_output_path(path: str | os.PathLike[str], *, kind: str = "folder", flag: str = "--out",
                      files: Iterable[str] = (), example: str = "results.csv") -> Path:
    """Check, before any long work, that ``path`` can be written as an output ``kind`` ("folder" or
    "file"); returns it as a :class:`~pathlib.Path`. Creates nothing. ``example`` is the file name
    the message suggests when a file output names a folder.

    A :class:`BenchError` naming ``flag`` when the path is empty, a folder output is an existing file,
    a file output is an existing folder, an output file listed in ``files`` (inside the folder) is a
    folder, a part of the path is a regular file or a broken link, or the folder to write in (the path
    itself, or its nearest existing ancestor) is not writable.

    Example::

        out = check_output_path(args.out, files=("result.json",))   # eval, train, report ...
        check_output_path(args.out, kind="file")                    # export's CSV
    """

    if kind not in ("folder", "file"):
        raise ValueError(f"kind must be 'folder' or 'file', got {kind!r}")
    if not str(path).strip():
        raise BenchError(f"{flag} is empty; give a {kind} path.")
    p = Path(path)
    try:
        if os.path.islink(p) and not p.exists():
            raise BenchError(f"{flag} {p} is a broken symbolic link; remove it or choose another {kind}.")
        if kind == "folder" and p.exists() and not p.is_dir():
            raise BenchError(f"{flag} {p} is an existing file, not a folder; choose a folder for the outputs.")
        if kind == "file" and p.is_dir():
            raise BenchError(f"{flag} {p} is a folder; give a file name, e.g. {p / example}.")
        if kind == "folder" and p.is_dir():
            for name in files:
                if (p / name).is_dir():
                    raise BenchError(f"{flag} {p} holds a folder {name} where an output file of that name goes; "
                                     f"move it or choose another {flag}.")
        if p.exists() and not os.access(p, os.W_OK):
            raise BenchError(f"{flag} {p} is not writable; choose another {kind} or fix its permissions.")
        folder = p if kind == "folder" else p.parent
        while not folder.exists():  # the nearest existing folder is where the new ones are created
            if os.path.islink(folder):
                raise BenchError(f"{flag} {p} lies under {folder}, a broken symbolic link.")
            folder = folder.parent
        if not folder.is_dir():
            raise BenchError(f"{flag} {p} lies under {folder}, which is a file, not a folder.")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise BenchError(f"{flag} {p} cannot be written: no permission to write in {folder}.")
    except OSError as e:  # e.g. a parent without search permission
        raise BenchError(f"{flag} {p} cannot be used: {e.strerror or e}.") from None
    return p


def check_apart_from_inputs(out: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]], *,
                            flag: str = "--out", what: str = "input") -> None:
    """Refuse (one sentence naming ``flag``) an output path that is one of ``inputs``, lies inside one,
    or contains one: writing there would overwrite or mix with what the command reads. Paths are
    compared resolved (symbolic links followed), so ``a/../b`` and a link to ``b`` are ``b``."""
    o = Path(out).resolve()
    for given in inputs:
        i = Path(given).resolve()
        if o == i:
            raise BenchError(f"{flag} {out} is the {what} {given}; writing there would overwrite it: choose another {flag}.")
        if i in o.parents:
            raise BenchError(f"{flag} {out} lies inside the {what} {given}; choose a {flag} outside every {what}.")
        if o in i.parents:
            raise BenchError(f"{flag} {out} contains the {what} {given}; choose a {flag} that holds no {what}.")


# errno values that mean the user's machine or paths, not a bug: reported as one sentence by the CLI
USER_ERRNOS = frozenset(getattr(errno, n) for n in (
    "EACCES", "EPERM", "EROFS", "ENOSPC", "EDQUOT", "EISDIR", "ENOTDIR", "EEXIST", "ENOENT", "ENAMETOOLONG",
    "ELOOP", "EMLINK", "EFBIG", "EXDEV", "ENOTEMPTY", "EBUSY", "ETXTBSY") if hasattr(errno, n))


def describe_os_error(e: OSError) -> str | None:
    """One sentence for an OSError caused by the user's paths or disk (permission denied, no space,
    a file where a folder should be, ...); None for anything else (a bug keeps its traceback)."""
    name = e.filename2 if e.filename2 is not None else e.filename
    if e.errno not in USER_ERRNOS or (name is None and e.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", -1))):
        return None
    reason = (e.strerror or str(e)).rstrip(".")
    reason = reason[:1].lower() + reason[1:]
    if name is None:
        return f"could not write the outputs: {reason}."
    return f"could not use {os.fsdecode(name)}: {reason}."


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Rows (dicts) as CSV text with a header; a missing or None value is an empty cell, keys not
    in ``columns`` are left out. The one CSV writer of the toolkit's outputs."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return buf.getvalue()


def slug(text: str) -> str:
    """A file-name-safe form of ``text``: every run of characters other than letters, digits and
    ``_.-`` becomes one ``_`` (part files are named so; resume finds them by these names)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
