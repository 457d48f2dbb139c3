"""One client for OpenAI-compatible chat-completions endpoints (vLLM, SGLang, Ollama, OpenAI, Gemini's compatible
endpoint): text and image messages, retries with backoff, a per-query deadline, concurrency and rate limits, token
counts and an optional SQLite response cache.

    from robot_rl.llm import LLMClient, LLMConfig, image_part, user_message

    client = LLMClient(LLMConfig(model="Qwen/Qwen2.5-VL-7B-Instruct", base_url="http://localhost:8000/v1"))
    reply = client.chat([user_message("What is in this image?", image_part(frame))])
    print(reply.content, client.usage.total_tokens)
"""

from robot_rl.llm.cache import ResponseCache, request_key
from robot_rl.llm.client import RETRY_STATUSES, LLMClient, Reply, Usage, parse_retry_after, run_sync, server_message
from robot_rl.llm.client import _RateLimiter as RateLimiter  # the client's request slots, for limiters shared wider
from robot_rl.llm.config import LLMConfig
from robot_rl.llm.errors import (
    LLMAuthError,
    LLMConnectionError,
    LLMError,
    LLMRequestError,
    LLMTimeoutError,
    LLMUnavailableError,
)
from robot_rl.llm.messages import (
    Message,
    Part,
    assistant_message,
    decode_image_part,
    image_part,
    system_message,
    text_part,
    user_message,
)

__all__ = [
    "RETRY_STATUSES", "LLMAuthError", "LLMClient", "LLMConfig", "LLMConnectionError", "LLMError", "LLMRequestError",
    "LLMTimeoutError", "LLMUnavailableError", "Message", "Part", "RateLimiter", "Reply", "ResponseCache", "Usage",
    "assistant_message", "decode_image_part", "image_part", "parse_retry_after", "request_key", "run_sync",
    "server_message", "system_message", "text_part", "user_message",
]
