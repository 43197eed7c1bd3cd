"""Settings, written once: each stage's dataclass holds its defaults, and each field that the
command line exposes holds its option's help in its metadata. `add_settings` turns such a
dataclass into argparse options and `settings_from` reads them back, so a new field is a new
option with nothing else to write.

Field metadata keys: `help` (required to be an option), `choices` (taken from a registry
where there is one), `metavar`, `flag` (when the option is not `--field-name`), `parse` (a
function from the option's text to the value; its T12kError is a usage error), `cli` (False:
not an option). A bool field is a flag: `store_true` when it defaults to False, `store_false`
(under its `flag`) when it defaults to True.

The rule a value must keep is in the metadata too: `choices`, `min` (at least), `above` (more
than), `max` (at most), `unit` (what the number counts: "seconds") and `must` (how the message
says the range, when the bounds alone say less). `check_fields` checks every field of a
settings object against them (None, where a field allows it, means "not given" and keeps every
rule), with one message for every command and the API: "--fpc must be at least 1; got 0". Only
rules between fields are written by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from t12k.errors import T12kError


def setting(default: Any, help: str, **meta: Any) -> Any:
    """A settings field with its default and its option's help (and choices, flag, ...)."""
    return dataclasses.field(default=default, metadata={"help": help, **meta})


def option_name(f: dataclasses.Field) -> str:
    """The option of a settings field: its `flag`, else `--field-name`."""
    return str(f.metadata.get("flag", "--" + f.name.replace("_", "-")))


def _bounds(meta: Mapping[str, Any]) -> str:
    """How the range of a field's `min`, `above` and `max` (in its `unit`) is said: 'at least 1',
    '0 or more seconds', 'a positive number of seconds'."""
    if "must" in meta:
        return str(meta["must"])
    low, above, high = meta.get("min"), meta.get("above"), meta.get("max")
    unit = f" {meta['unit']}" if "unit" in meta else ""
    if low is not None and high is not None:
        return f"between {low} and {high}{unit}"
    if above == 0 and high is None:
        return f"a positive number of{unit}" if unit else "positive"
    said = [] if low is None else ["0 or more" if low == 0 else f"at least {low}"]
    said += [] if above is None else [f"more than {above}"]
    said += [] if high is None else [f"at most {high}"]
    return " and ".join(said) + unit


def broken_rule(meta: Mapping[str, Any], value: Any) -> str | None:
    """What `value` must be and is not ('one of a, b', 'at least 1'), by the rule in a field's
    metadata `meta`; None when it keeps the rule (or there is none, or the value is None)."""
    if value is None:
        return None
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        return f"one of {', '.join(map(str, choices))}"
    if not any(k in meta for k in ("min", "above", "max")):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(meta.get("must", "a number"))
    low, above, high = meta.get("min"), meta.get("above"), meta.get("max")
    too_low = (low is not None and not number >= low) or (above is not None and not number > above)
    return _bounds(meta) if too_low or (high is not None and not number <= high) else None


def check_fields(settings: Any) -> None:
    """T12kError naming the option, what it must be and the value given, for the first field of
    the settings dataclass instance `settings` that breaks its metadata's rule."""
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        must = broken_rule(f.metadata, value)
        if must is not None:
            shown = repr(value) if isinstance(value, str) else value
            raise T12kError(f"{option_name(f)} must be {must}; got {shown}")


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
        flag = option_name(f)
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
