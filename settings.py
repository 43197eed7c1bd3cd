"""Settings, written once: each stage's dataclass holds its defaults, and each field that the
command line exposes holds its option's help in its metadata. `add_settings` turns such a
dataclass into argparse options and `settings_from` reads them back, so a new field is a new
option with nothing else to write.

Field metadata keys: `help` (required to be an option), `choices` (taken from a registry
where there is one), `metavar`, `flag` (when the option is not `--field-name`), `parse` (a
function from the option's text to the value; its T12kError is a usage error), `cli` (False:
not an option). A bool field is a flag: `store_true` when it defaults to False, `store_false`
(under its `flag`) when it defaults to True.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any

from t12k.errors import T12kError


def setting(default: Any, help: str, **meta: Any) -> Any:
    """A settings field with its default and its option's help (and choices, flag, ...)."""
    return dataclasses.field(default=default, metadata={"help": help, **meta})


def _option_type(hint: Any) -> Any:
    """The argparse type of a field annotation: `int | None` -> int, `str` -> str."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return hint if hint in (int, float, str, bool) else str


def _parser(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a settings parser: its T12kError becomes argparse's one-line usage error."""

    def run(text: str) -> Any:
        try:
            return parse(text)
        except T12kError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    run.__name__ = parse.__name__
    return run


def _settings(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return [
        (f, _option_type(hints[f.name]))
        for f in dataclasses.fields(cls)
        if "help" in f.metadata and f.metadata.get("cli", True)
    ]


def add_settings(
    p: argparse.ArgumentParser,
    cls: type,
    *,
    only: tuple[str, ...] | None = None,
    skip: tuple[str, ...] = (),
    overrides: bool = False,
) -> None:
    """An option for every field of the settings dataclass `cls` that has help in its metadata.

    With `overrides`, options default to None (not given: each item keeps its own value) and
    their help says they override.
    """
    for f, kind in _settings(cls):
        if (only is not None and f.name not in only) or f.name in skip:
            continue
        meta = f.metadata
        flag = meta.get("flag", "--" + f.name.replace("_", "-"))
        kw: dict[str, Any] = {"dest": f.name, "help": meta["help"]}
        if overrides:
            kw["help"] = f"override every configuration's setting: {meta['help']}"
        if kind is bool and not overrides:
            kw["action"] = "store_false" if f.default is True else "store_true"
            kw["help"] += "%(default).0s"  # no "(default: ...)": the flag's name says it
        else:
            kw["type"] = _parser(meta["parse"]) if "parse" in meta else int if kind is bool else kind
            for key in ("choices", "metavar"):
                if key in meta:
                    kw[key] = meta[key]
        if "default" in kw["help"] and "%(default)" not in kw["help"]:
            kw["help"] += "%(default).0s"  # the help says the default itself
        if not overrides and f.default is not dataclasses.MISSING:
            kw["default"] = f.default
        elif overrides:
            kw["default"] = None
        p.add_argument(flag, **kw)


def settings_from(args: argparse.Namespace, cls: type, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The values of `cls`'s options in `args` (None-valued ones left out), for `cls(**...)`."""
    names = [f.name for f, _ in _settings(cls) if f.name not in skip]
    return {n: getattr(args, n) for n in names if hasattr(args, n) and getattr(args, n) is not None}
