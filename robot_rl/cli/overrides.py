"""Typed configs from YAML plus dotted ``--set key.sub=value`` overrides on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def load_yaml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such config file" if not Path(path).exists() else
                                f"{path}: not a config file (a folder?)")
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: cannot read config ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config must be a mapping of keys to values")
    return data


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``["iql.temperature=10", "steps=5000"]`` -> nested updates; values parsed as YAML scalars."""
    out = dict(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected key=value, e.g. iql.temperature=10")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node[part] = dict(node.get(part) or {})
            node = node[part]
        node[parts[-1]] = yaml.safe_load(raw)
    return out
