"""Help text for the command line."""

from __future__ import annotations


def command_help(doc: str | None) -> str:
    """A subcommand module's docstring without its ``robot-rl NAME``: prefix, for --help."""
    text = (doc or "").strip()
    return text.split(": ", 1)[1] if text.startswith("``robot-rl") and ": " in text else text
