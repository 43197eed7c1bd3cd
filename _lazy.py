"""Package exports imported on first use, so that importing one light module of a package (a
settings dataclass, a constant) does not import the whole package (PyTorch, zarr): the command
line builds its parser from such modules and starts without them."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """The module `__getattr__` of `package`: each name of `exports` (name -> submodule) is
    imported from its submodule when first asked for, then kept as the package's attribute."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)  # wins over a submodule of the same name
        return value

    return __getattr__
