"""What the command line prints when a command fails: one line, ``robot-rl CMD: error: WHAT (WHERE)``, exit status 2
(docs/cli_errors.md). ``main`` sends every exception through ``describe``; ``--debug`` adds the traceback."""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EXIT_ERROR = 2
"""Exit status of every refused or failed command."""
EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as a shell reports it."""
DEBUG_HINT = "(run with --debug for the traceback)"


class UserError(Exception):
    """A problem with the user's input; printed as one line, exit status 2."""


class UsageError(UserError):
    """A command line argparse rejects (unknown flag, a flag's value of the wrong type); ``prog`` is the parser's."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


def expected_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that carry a message meant for the user (printed as it is, no debug hint)."""
    from robot_rl.data.errors import DatasetError
    from robot_rl.llm.errors import LLMError
    from robot_rl.rewards.code_reward import RewardCodeError
    from robot_rl.rewards.store import LabelStoreError

    return (UserError, DatasetError, ValueError, LLMError, RewardCodeError, LabelStoreError)


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of spaces collapsed to single spaces."""
    return " ".join(str(text).split())


def describe(e: BaseException, out: Any = None) -> tuple[str, bool]:
    """(the one line for ``e``, whether it is unexpected: then the line ends with the ``--debug`` hint). ``out``: the
    command's output path, named when a disk fills up somewhere the exception does not say."""
    full = disk_full(e)
    if full is not None:
        if full:
            return f"{full}: disk full (no space left on device); free some space and rerun", False
        near = f" while writing {out}" if out is not None else ""
        return f"disk full (no space left on device){near}; free some space and rerun", False
    if isinstance(e, OSError):
        return os_error_text(e), False
    text = one_line(str(e))
    if "I/O error" in text and _on_full_disk(text):  # SQLite says "disk I/O error" when it cannot grow its journal
        text += "; disk full (no space left on device)"
    if isinstance(e, expected_errors()):
        return text or type(e).__name__, False
    return f"{type(e).__name__}: {text}" if text else type(e).__name__, True


_OS_REASONS = {
    errno.EACCES: "permission denied", errno.EPERM: "operation not permitted", errno.EROFS: "read-only file system",
    errno.ENOTDIR: "a part of the path is a file, not a folder", errno.ENOENT: "no such file or folder",
    errno.EEXIST: "already exists", errno.EISDIR: "is a folder, not a file", errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded", errno.ENAMETOOLONG: "file name too long",
}


def os_error_text(e: OSError) -> str:
    """``PATH: reason`` for an ``OSError`` (h5py's, whose path and errno are inside the message, too); the message as
    it is for one raised with a message of its own."""
    code, path = e.errno, e.filename
    message = one_line(str(e))
    if code is None:
        m = re.search(r"errno = (\d+)", message)
        code = int(m.group(1)) if m else None
        n = re.search(r"name = '([^']*)'", message)
        path = n.group(1) if n else path
    if code is None and path is None:
        return message or type(e).__name__
    reason = _OS_REASONS.get(code or -1) or one_line(e.strerror or "") or message
    if code == errno.EEXIST and path is not None and Path(str(path)).is_file():
        reason = "is a file, not a folder"  # mkdir(parents=True) of an output folder under a file
    where = f"{path} -> {e.filename2}" if path is not None and getattr(e, "filename2", None) else path
    return f"{where}: {reason}" if where is not None else reason


def disk_full(e: BaseException) -> str | None:
    """None unless ``e`` (or an exception it came from) says the disk is full; then the path it names, or ''."""
    for x in _chain(e):
        text = str(x)
        if ((isinstance(x, OSError) and x.errno in (errno.ENOSPC, errno.EDQUOT)) or "No space left on device" in text
                or "database or disk is full" in text or re.search(r"errno = 28\b", text)):
            if isinstance(x, OSError) and x.filename is not None:
                return str(x.filename)
            m = re.search(r"name = '([^']*)'", text)
            return m.group(1) if m else ""
    return None


def _on_full_disk(text: str) -> bool:
    """Whether the path that ``text`` starts with (``PATH: ...``) lies on a filesystem with (almost) no room left."""
    import shutil

    m = re.match(r"(/[^:]*):", text)
    if not m:
        return False
    folder = Path(m.group(1))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free < 1 << 16
    except OSError:
        return False


def _chain(e: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    x: BaseException | None = e
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        yield x
        x = x.__cause__ or x.__context__


def output_path(args: Any) -> str | None:
    """Where the command writes, for an error that does not say (a full disk under SQLite or torch): ``--out``,
    ``--store`` or ``--png`` as ``--out PATH``, else the dataset it writes into or next to."""
    for flag in ("out", "store", "png"):
        value = getattr(args, flag, None)
        if value is not None:
            return f"--{flag} {value}"
    dataset = getattr(args, "dataset", None)
    return f"into or next to {dataset}" if dataset is not None else None
