"""Errors of the LLM client: every message is one line that says what failed and where (method, URL, status, the
server's own message)."""

from __future__ import annotations


class LLMError(Exception):
    """Base of every error the client raises."""


class LLMRequestError(LLMError):
    """The server refused the request itself (400, 404, 422...): retrying cannot help; fix the request, model name
    or base URL. ``status`` is the HTTP status (0 when the request could not even be sent)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class LLMAuthError(LLMRequestError):
    """401 or 403: the API key is missing, wrong, or not allowed to use this model."""


class LLMUnavailableError(LLMError):
    """No usable reply within the retry budget: connection failures, 429, 5xx or malformed replies every time.
    Transient by nature: the same request may succeed later."""


class LLMConnectionError(LLMUnavailableError):
    """Every attempt failed to connect (connection refused, unknown host, connect timeout): nobody is serving at the
    base URL. Every other query to it would fail the same way, so callers running many queries stop at the first."""


class LLMTimeoutError(LLMUnavailableError):
    """No complete reply within the per-query deadline (which covers connecting, retries, backoff and the body)."""


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
