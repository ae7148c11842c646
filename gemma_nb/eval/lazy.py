"""Notebook-only packages, imported when first used so that `import gemma_nb.eval` stays light."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

__all__ = ["require"]

# The extra that brings each package (see pyproject.toml).
_EXTRAS = {"pandas": "notebook", "matplotlib": "notebook", "ipywidgets": "notebook"}


def require(name: str) -> ModuleType:
    """`import name`, or a one-line error saying which extra installs it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        package = name.split(".")[0]
        raise MissingDependencyError(
            f"this needs {package}: pip install 'gemma-nb[{_EXTRAS.get(package, 'notebook')}]'"
        ) from None
