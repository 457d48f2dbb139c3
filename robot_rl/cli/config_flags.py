"""Command-line flags made from a config dataclass, so that a flag's name, type, default and help live in one
place: the dataclass field and the docstring under it.

``add_config_flags(parser, TrainConfig, ["steps", "seed"])`` adds ``--steps`` and ``--seed`` (snake_case ->
``--kebab-case``, or a name from ``rename``), typed from the annotations (``int``, ``float``, ``str``, ``bool``,
``X | None``, ``tuple[X, ...]``, ``Literal[...]``), defaulting to the field's default, with the field's docstring as
help. ``config_dict`` then merges, in this order: ``--config`` YAML, the flags given on the command line (a flag
left at its default does not override the YAML), and ``--set key.sub=value`` overrides.

Written here rather than taken from tyro or simple-parsing: both add every field of a dataclass (we choose a few per
command), rename flags only through annotations inside the config classes (which would make ``rl`` and ``rewards``
import a CLI library), and bake the defaults into the parse, which loses "YAML unless the flag was given".
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import re
import textwrap
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from robot_rl.cli.overrides import apply_overrides, load_yaml
from robot_rl.core.config_check import ConfigError, config_from_dict

T = TypeVar("T")

GIVEN = "_config_flags_given"
"""Namespace attribute: the dests of config flags that were on the command line."""


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the string literal right after the field in the class body (and its dataclass bases')."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0]
        assert isinstance(body, ast.ClassDef)
        for node, after in zip(body.body, body.body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def plain_doc(doc: str) -> str:
    """A docstring as one line of help text: whitespace collapsed, reST ``literal`` marks dropped."""
    return re.sub(r"\s+", " ", doc.replace("``", "")).strip()


class _Given(argparse.Action):
    """Stores the value (converted by ``convert``) and records that the flag was given."""

    def __init__(self, *args: Any, convert: Any = None, **kwargs: Any) -> None:
        self.convert = convert
        super().__init__(*args, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        value = self.const if self.nargs == 0 else values
        setattr(namespace, self.dest, self.convert(value) if self.convert else value)
        given = set(getattr(namespace, GIVEN, set()))
        given.add(self.dest)
        setattr(namespace, GIVEN, given)


@dataclasses.dataclass(frozen=True)
class ConfigFlags:
    """The flags ``add_config_flags`` made: config field -> argparse dest."""

    cls: type
    dests: Mapping[str, str]

    def given(self, args: argparse.Namespace) -> dict[str, Any]:
        """Fields whose flag was on the command line -> its value."""
        given: set[str] = getattr(args, GIVEN, set())
        return {f: getattr(args, d) for f, d in self.dests.items() if d in given}

    def values(self, args: argparse.Namespace) -> dict[str, Any]:
        """Every flagged field -> its value (the dataclass default where the flag was not given)."""
        return {f: getattr(args, d) for f, d in self.dests.items()}


def add_config_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type,
                     fields: Sequence[str] | None = None, rename: Mapping[str, str] | None = None,
                     choices: Mapping[str, Sequence[Any]] | None = None) -> ConfigFlags:
    """Add a flag for each of ``fields`` (default: every field of a scalar, tuple or literal type) of the dataclass
    ``cls``. ``rename``: field -> flag name without dashes, where it is not the field's name in kebab case.
    ``choices``: field -> allowed values, for ``str`` fields checked elsewhere (``Literal`` fields get theirs)."""
    hints = get_type_hints(cls)
    docs = field_docs(cls)
    all_fields = {f.name: f for f in dataclasses.fields(cls)}
    names = list(fields) if fields is not None else [n for n in all_fields if _supported(hints[n])]
    dests = {}
    for name in names:
        f = all_fields[name]
        flag = (rename or {}).get(name, name).replace("_", "-")
        dest = flag.replace("-", "_")
        default = _default(f)
        kwargs = _type_kwargs(hints[name], default, f"{cls.__name__}.{name}")
        if choices and name in choices:
            kwargs["choices"] = list(choices[name])
        help_text = plain_doc(docs[name]) if name in docs else ""
        if default is not None and kwargs.get("nargs") != 0 and "(default" not in help_text:
            help_text = f"{help_text} (default: {_show(default)})".strip()
        parser.add_argument(f"--{flag}", dest=dest, default=default, action=_Given,
                            help=help_text.replace("%", "%%") or None, **kwargs)
        dests[name] = dest
    return ConfigFlags(cls, dests)


def add_config_file_flags(parser: argparse.ArgumentParser, cls: type, example: str) -> None:
    """``--config YAML`` and repeatable ``--set key=value`` for the fields of ``cls``."""
    parser.add_argument("--config", type=Path, default=None, help=f"YAML with {cls.__name__} fields")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a config field, e.g. --set {example} (repeatable)")


def config_dict(flags: ConfigFlags, args: argparse.Namespace) -> dict[str, Any]:
    """``--config`` YAML, then the config flags given on the command line, then ``--set`` overrides."""
    cfg = load_yaml(getattr(args, "config", None))
    cfg.update(flags.given(args))
    return apply_overrides(cfg, getattr(args, "set", []))


def build_config(cls: type[T], flags: ConfigFlags, args: argparse.Namespace, what: str,
                 data: Mapping[str, Any] | None = None) -> T:
    """``cls`` from ``data`` (default: ``config_dict``) through ``core.config_check.config_from_dict``: an unknown
    key, a wrong type or a value out of its declared range is one ``ConfigError`` line naming the key as the user
    gave it (``--steps`` for a flag, ``iql.batch_size`` for ``--set`` / YAML), the value and what is expected."""
    try:
        return config_from_dict(cls, config_dict(flags, args) if data is None else data)
    except ConfigError as e:
        dest = flags.dests.get(e.key)
        if dest is not None and dest in getattr(args, GIVEN, set()):
            flag = "--" + dest.replace("_", "-")
            raise ConfigError(e.key, str(e).replace(e.key, flag, 1)) from None
        raise ConfigError(e.key, f"{what} config: {e}") from None


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None  # a required field: the command says when it is missing


def _show(default: Any) -> str:
    if isinstance(default, tuple):
        return " ".join(map(str, default)) or "none"
    return str(default)


def _optional_inner(tp: Any) -> Any:
    """``X`` for ``X | None``, else ``tp``."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _supported(tp: Any) -> bool:
    tp = _optional_inner(tp)
    return tp in (int, float, str, bool) or get_origin(tp) in (Literal, tuple)


def _type_kwargs(tp: Any, default: Any, where: str) -> dict[str, Any]:
    tp = _optional_inner(tp)
    if tp is bool:
        if default:
            raise TypeError(f"{where}: a flag for a bool that defaults to True is not supported; use --set")
        return {"nargs": 0, "const": True}
    if tp in (int, float, str):
        return {"type": tp}
    if get_origin(tp) is Literal:
        values = get_args(tp)
        return {"type": type(values[0]), "choices": list(values)}
    if get_origin(tp) is tuple:
        item = get_args(tp)[0]
        return {"type": item, "nargs": "*", "convert": tuple}
    raise TypeError(f"{where}: no flag for type {tp!r}; use --set")
