"""Chat messages in the OpenAI format: text and image parts, and role helpers.

A message is a plain dict (``{"role": "user", "content": "..." | [part, ...]}``), exactly what goes on the wire, so
that callers can also build messages by hand.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

Message = dict[str, Any]
"""``{"role": "system" | "user" | "assistant", "content": str | list[part]}``."""
Part = dict[str, Any]
"""``{"type": "text", "text": ...}`` or ``{"type": "image_url", "image_url": {"url": ...}}``."""


def text_part(text: str) -> Part:
    return {"type": "text", "text": text}


def image_part(frame: np.ndarray, detail: str | None = None) -> Part:
    """An ``image_url`` part holding ``frame`` (uint8 ``[H, W, 3]`` RGB) as a lossless PNG ``data:`` URL.

    ``detail`` (``"low"``, ``"high"``, ``"auto"``) is passed on where given; OpenAI reads it, others ignore it.
    """
    from PIL import Image  # imported here: only image queries need Pillow

    array = np.asarray(frame)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"image_part needs a uint8 [H, W, 3] RGB frame, got {array.dtype} {list(array.shape)}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    image: dict[str, Any] = {"url": url}
    if detail is not None:
        image["detail"] = detail
    return {"type": "image_url", "image_url": image}


def decode_image_part(part: Part) -> np.ndarray:
    """The uint8 ``[H, W, 3]`` frame of an image part with a base64 ``data:`` URL (the inverse of ``image_part``)."""
    from PIL import Image

    url = str(part.get("image_url", {}).get("url", ""))
    head, sep, data = url.partition(",")
    if not sep or not head.startswith("data:image/") or not head.endswith(";base64"):
        raise ValueError(f"not a base64 data: URL image part: '{url[:40]}'")
    with Image.open(io.BytesIO(base64.b64decode(data))) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def system_message(text: str) -> Message:
    return {"role": "system", "content": text}


def user_message(*content: str | Part) -> Message:
    """A user message: one string becomes plain text content; several items (strings or parts) become a list of
    parts in that order (strings as text parts)."""
    if len(content) == 1 and isinstance(content[0], str):
        return {"role": "user", "content": content[0]}
    return {"role": "user", "content": [text_part(c) if isinstance(c, str) else c for c in content]}


def assistant_message(text: str) -> Message:
    return {"role": "assistant", "content": text}
