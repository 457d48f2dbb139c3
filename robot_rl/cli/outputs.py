"""The one check of an output path, made by every command that writes before it does any work: the file or folder
can be created there (its nearest existing folder takes a probe file), an existing file is not a folder and an
existing folder is not a file. A refusal is one ``OutputPathError`` line naming the flag, the path and why."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Literal

from robot_rl.cli.errors import UserError


class OutputPathError(UserError):
    """An output path the command cannot write."""


def check_output(path: Path | str, flag: str = "--out", kind: Literal["file", "folder"] = "file") -> Path:
    """Raise ``OutputPathError`` unless ``path`` can be written as a ``kind``; returns it as a ``Path``. Creates
    nothing (the probe file is removed at once)."""
    path = Path(path)
    lead = f"{flag} {path}: cannot write there"
    if path.exists():
        if kind == "file" and path.is_dir():
            raise OutputPathError(f"{lead}: it is a folder (give a file name)")
        if kind == "folder" and not path.is_dir():
            raise OutputPathError(f"{lead}: it is a file, not a folder")
        if kind == "file" and not path.is_file():
            raise OutputPathError(f"{lead}: it is not a regular file")
    folder = path if kind == "folder" and path.is_dir() else path.parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputPathError(f"{lead}: {existing} is a file, not a folder")
    reason = _probe(existing)
    if reason is not None:
        where = "" if existing == folder else f" ({existing}, where its folder would be made)"
        raise OutputPathError(f"{lead}: {existing} is not writable{where}: {reason}")
    if kind == "file" and path.is_file() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{lead}: the file is read-only")
    return path


def _probe(folder: Path) -> str | None:
    """None when a file can be made in ``folder`` (tried: as root, permission bits say nothing), else why not."""
    try:
        fd, name = tempfile.mkstemp(prefix=".robot-rl-probe-", dir=folder)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            return "disk full (no space left on device)"
        return e.strerror or str(e)
    os.close(fd)
    os.unlink(name)
    return None
