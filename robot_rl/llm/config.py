"""``LLMConfig``: where the endpoint is, which model, and the client's time, retry and rate budgets."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LLMConfig:
    """One OpenAI-compatible chat-completions endpoint and how to talk to it.

    ``base_url`` is the API root that ``/chat/completions`` is appended to, as in the OpenAI SDK, e.g.
    ``http://localhost:8000/v1`` (vLLM, SGLang: port 30000), ``http://localhost:11434/v1`` (Ollama),
    ``https://api.openai.com/v1``, ``https://generativelanguage.googleapis.com/v1beta/openai`` (Gemini).
    """

    model: str
    """Model name as the server knows it (vLLM: the ``--served-model-name`` or the model path)."""
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable that holds the API key (read when the client is made). Unset or empty is
    fine for local servers that need no key: then no ``Authorization`` header is sent."""
    connect_timeout_s: float = 10.0
    """Limit on opening one TCP/TLS connection."""
    deadline_s: float = 120.0
    """Total time one query may take, from its first request: all attempts, backoff waits, ``Retry-After`` waits
    and reading the reply body (a reply that drips in slowly is cut off here too)."""
    max_retries: int = 4
    """Retries after the first attempt on transient failures (connection errors, 429, 500/502/503/504, malformed
    replies)."""
    backoff_base_s: float = 0.5
    """Backoff before retry ``k`` (1-based): ``min(backoff_max_s, backoff_base_s * 2**(k-1))`` times a random factor
    in [0.5, 1] (jitter), unless the server sent ``Retry-After``."""
    backoff_max_s: float = 8.0
    max_concurrency: int = 8
    """Requests in flight at once within one event loop (the labeler's, or your own async code's)."""
    requests_per_minute: float | None = None
    """Optional rate limit across all of this client's requests (evenly spaced, no bursts)."""
    temperature: float = 0.0
    max_tokens: int | None = 1024
    """Reply length limit sent as ``max_tokens`` (``None``: not sent, the server's default applies)."""
    extra_body: dict[str, Any] = field(default_factory=dict)
    """More request fields, sent as they are (e.g. ``{"seed": 0}``, ``{"top_p": 1}``; OpenAI's reasoning models:
    ``max_tokens=None`` and ``{"max_completion_tokens": N}``). The fields above cannot be set here."""
    cache_path: str | None = None
    """SQLite file of a response cache keyed by the request (off when ``None``). Identical requests are then
    answered from disk and never paid twice; meant for ``temperature`` 0."""

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("LLMConfig.model must be a non-empty model name")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"LLMConfig.base_url must start with http:// or https://, got '{self.base_url}'")
        if self.connect_timeout_s <= 0 or self.deadline_s <= 0:
            raise ValueError(f"connect_timeout_s and deadline_s must be > 0, got {self.connect_timeout_s} and "
                             f"{self.deadline_s}")
        if self.max_retries < 0 or self.max_concurrency < 1:
            raise ValueError(f"max_retries must be >= 0 and max_concurrency >= 1, got {self.max_retries} and "
                             f"{self.max_concurrency}")
        if self.backoff_base_s < 0 or self.backoff_max_s < 0:
            raise ValueError("backoff_base_s and backoff_max_s must be >= 0")
        if self.requests_per_minute is not None and self.requests_per_minute <= 0:
            raise ValueError(f"requests_per_minute must be > 0 (or None for no limit), got {self.requests_per_minute}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1 (or None), got {self.max_tokens}")
        clash = sorted(set(self.extra_body) & {"model", "messages", "stream", "temperature", "max_tokens"})
        if clash:
            raise ValueError(f"extra_body cannot set {', '.join(clash)}: use the LLMConfig fields")

    @property
    def url(self) -> str:
        """The chat-completions URL every request goes to."""
        return self.base_url.rstrip("/") + "/chat/completions"

    def api_key(self) -> str | None:
        """The key from ``$api_key_env`` (``None`` when unset or empty)."""
        return os.environ.get(self.api_key_env) or None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> LLMConfig:
        known = {f.name for f in dataclasses.fields(LLMConfig)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown LLMConfig field(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return LLMConfig(**d)
