"""The one check of config values: every config dataclass field is checked against its annotation and its declared
range, wherever the value came from (YAML, ``--set``, a flag, a pipeline section, a checkpoint, Python).

A field declares its range where it is defined::

    batch_size: int = bounded(256, ge=1)
    expectile: float = bounded(0.7, gt=0, lt=1)

``check_fields(self)`` in the dataclass's ``__post_init__`` checks (and normalizes: YAML lists become tuples, ints
become floats) every field, and ``config_from_dict(cls, data)`` builds a dataclass, nested ones included, from a
mapping with unknown keys refused (with the closest valid name). Every refusal is one ``ConfigError`` line naming
the key (dotted from the top: ``iql.batch_size``), the value and what is expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, cast, get_args, get_origin, get_type_hints

T = TypeVar("T")

RANGE = "robot_rl.range"
"""Field metadata key of a ``Range``."""


class ConfigError(ValueError):
    """A config value of the wrong type or out of its range, or an unknown key; ``key`` is its dotted name."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclasses.dataclass(frozen=True)
class Range:
    """Bounds of a number (of each item, for a tuple of numbers); None: unbounded on that side."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def contains(self, x: float) -> bool:
        return ((self.ge is None or x >= self.ge) and (self.gt is None or x > self.gt)
                and (self.le is None or x <= self.le) and (self.lt is None or x < self.lt))

    def describe(self) -> str:
        low = (self.ge, "[") if self.ge is not None else (self.gt, "(") if self.gt is not None else None
        high = (self.le, "]") if self.le is not None else (self.lt, ")") if self.lt is not None else None
        if low and high:
            return f"in {low[1]}{_num(low[0])}, {_num(high[0])}{high[1]}"
        if low:
            return f"{'>=' if low[1] == '[' else '>'} {_num(low[0])}"
        if high:
            return f"{'<=' if high[1] == ']' else '<'} {_num(high[0])}"
        return "any number"


def bounded(default: T, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None) -> T:
    """A dataclass field with ``default`` and a range (for a tuple: of each item), checked by ``check_fields``."""
    return cast(T, dataclasses.field(default=default, metadata={RANGE: Range(ge=ge, gt=gt, le=le, lt=lt)}))


def check_fields(obj: Any, error: type[ValueError] = ConfigError, where: str = "") -> None:
    """Check every field of the dataclass instance ``obj`` against its annotation and declared range; normalize
    lists to tuples and ints to floats (``object.__setattr__``: frozen dataclasses too). Raises ``error`` (one line:
    ``{where}{field} must be ..., got ...``) at the first bad field."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        if not f.init:
            continue
        value = getattr(obj, f.name)
        try:
            fixed = check_value(hints[f.name], value, f"{where}{f.name}", f.metadata.get(RANGE))
        except ConfigError as e:
            raise (e if error is ConfigError else error(str(e))) from None
        if fixed is not value:
            object.__setattr__(obj, f.name, fixed)


def config_from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """``cls(**data)`` with nested dataclass fields built from mappings; an unknown key, a value of the wrong type or
    out of range, and the class's own refusal are each one ``ConfigError`` naming the dotted key."""
    if not isinstance(data, Mapping):
        raise ConfigError(where.rstrip("."), f"{where.rstrip('.') or 'the config'} must be a mapping of keys to "
                                             f"values, got {data!r}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cast(Any, cls)) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{where}{key}", f"unknown key {where}{key}{did_you_mean(str(key), fields)}; valid "
                                               f"keys: {', '.join(fields)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp) and isinstance(tp, type) and isinstance(value, Mapping):
            value = config_from_dict(tp, value, f"{where}{key}.")
        else:
            value = check_value(tp, value, f"{where}{key}", fields[key].metadata.get(RANGE))
        kwargs[key] = value
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}{missing[0]}", f"{where}{missing[0]} is required")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        text = " ".join(str(e).split()) or type(e).__name__
        raise ConfigError(where.rstrip("."), f"{where.rstrip('.') + ': ' if where else ''}{text}") from None


def check_value(tp: Any, value: Any, key: str, bounds: Range | None = None) -> Any:
    """``value`` if it fits the annotation ``tp`` (and ``bounds``), normalized (tuple, float); else ``ConfigError``."""
    ok, fixed = _fit(tp, value)
    if not ok:
        raise ConfigError(key, f"{key} must be {describe_type(tp, bounds)}, got {_show(value)}")
    if bounds is not None:
        items = fixed if isinstance(fixed, tuple) else (fixed,)
        for x in items:
            if isinstance(x, int | float) and not isinstance(x, bool) and not bounds.contains(x):
                what = f"every item of {key}" if isinstance(fixed, tuple) else key
                raise ConfigError(key, f"{what} must be {bounds.describe()}, got {_show(value)}")
    return fixed


def describe_type(tp: Any, bounds: Range | None = None) -> str:
    """An annotation in words: ``an integer >= 1``, ``a list of integers``, ``one of 'a', 'b'``."""
    origin = get_origin(tp)
    rng = f" {bounds.describe()}" if bounds is not None else ""
    if origin in (Union, types.UnionType):
        parts = [describe_type(t, bounds) for t in get_args(tp) if t is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in get_args(tp) else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin is tuple or tp is tuple:
        args = get_args(tp)
        inner = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        return "a list" + (f" of {_plural(inner)}{rng}" if inner is not None else "")
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(tp, getattr(tp, "__name__", str(tp))) + (rng if tp in (int, float) else "")


def did_you_mean(name: str, valid: Any) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``valid``, else empty."""
    close = difflib.get_close_matches(name, [str(v) for v in valid], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _fit(tp: Any, value: Any) -> tuple[bool, Any]:
    """(whether ``value`` fits ``tp``, the value normalized)."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        for t in get_args(tp):
            ok, fixed = _fit(t, value)
            if ok:
                return True, fixed
        return False, value
    if origin is Literal:
        return value in get_args(tp), value
    if origin is tuple or tp is tuple:
        if not isinstance(value, list | tuple):
            return False, value
        args = get_args(tp)
        inner = args[0] if len(args) == 2 and args[1] is Ellipsis else Any
        fitted = [_fit(inner, v) for v in value]
        if not all(ok for ok, _ in fitted):
            return False, value
        out = tuple(v for _, v in fitted)
        return True, value if isinstance(value, tuple) and out == value else out
    return _fit_scalar(tp, value)


def _fit_scalar(tp: Any, value: Any) -> tuple[bool, Any]:
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                isinstance(value, float) and math.isnan(value)):
            return False, value
        return True, value if isinstance(value, float) else float(value)
    if tp is str:
        return isinstance(value, str), value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return isinstance(value, tp), value
    return True, value  # Any, or a type this check does not know


def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _plural(tp: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(tp, describe_type(tp))


def _num(x: float | None) -> str:
    return f"{x:g}" if x is not None else "?"


def _show(value: Any) -> str:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
