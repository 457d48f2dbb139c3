"""Progress bars of the command line: rich's, except that a command that fails leaves no bar behind. Off a terminal
(a log, a pipe, a test) rich prints a bar's last state when it stops; after an error that would be more lines next
to the one error line (cli/errors.py), so a bar stopped by an exception is cleared instead."""

from __future__ import annotations

from types import TracebackType

from rich import progress as _rich


class Progress(_rich.Progress):
    """``rich.progress.Progress`` that prints nothing more when an exception ends it."""

    def __exit__(self, exc_type: type[BaseException] | None, exc_val: BaseException | None,
                 exc_tb: TracebackType | None) -> None:
        if exc_type is None or self.disable:
            super().__exit__(exc_type, exc_val, exc_tb)
            return
        self.live.transient = True
        self.live.stop()  # rich's stop() would add an empty line off a terminal
