"""Fixtures of the LLM tests: ``replay_server`` (a local OpenAI-compatible server, see ``replay_server.py``)."""

from tests.llm.replay_server import replay_server

__all__ = ["replay_server"]
