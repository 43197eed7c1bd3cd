"""Package exports imported on first use, so that importing one light module of a package (a
settings dataclass, a constant) does not import the whole package (PyTorch, zarr): the command
line builds its parser from such modules and starts without them."""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from typing import Any


class _SameNamePackage(types.ModuleType):
    """A package that exports a name of the same name as its submodule (divita's `train`
    function, from its module `train`): the import system binds each submodule it loads to its
    package's attribute, and here that attribute stays the export, as an eager
    `from .train import train` left it."""

    def __setattr__(self, name: str, value: Any) -> None:
        exports = self.__dict__.get("_lazy_exports", {})
        if isinstance(value, types.ModuleType) and exports.get(name) == name == value.__name__.rpartition(".")[2]:
            value = getattr(value, name)
        super().__setattr__(name, value)


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """The module `__getattr__` of `package`: each name of `exports` (name -> submodule) is
    imported from its submodule when first asked for, then kept as the package's attribute."""
    module = sys.modules[package]
    if any(name == sub for name, sub in exports.items()):
        module._lazy_exports = dict(exports)  # type: ignore[attr-defined]
        module.__class__ = _SameNamePackage

    def __getattr__(name: str) -> Any:
        sub = exports.get(name)
        if sub is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{sub}"), name)
        setattr(sys.modules[package], name, value)  # wins over a submodule of the same name
        return value

    return __getattr__
