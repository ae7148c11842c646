"""Editable installs of `export/` as the `gemma_export` package.

The wheel force-includes export/ as gemma_export/. An editable install puts the project root on
sys.path, where gemma_nb is found, but hatchling cannot rename a folder in one
(pfmoore/editables#20): this hook adds a `gemma_export` module to the editable wheel that loads
export/__init__.py in its place. Submodules then come from export/, edits show on the next
import, and nothing is needed at run time, so `pip install --no-deps -e .` works.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

_LOADER = '''\
"""gemma-nb installed in editable mode: the gemma_export package is {folder}."""
import importlib.util
import sys

_spec = importlib.util.spec_from_file_location(
    __name__, {init!r}, submodule_search_locations=[{folder!r}])
_module = importlib.util.module_from_spec(_spec)
sys.modules[__name__] = _module
_spec.loader.exec_module(_module)
'''


class EditableGemmaExport(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        self._staging = None
        if self.target_name != "wheel" or version != "editable":
            return
        folder = os.path.join(self.root, "export")
        self._staging = tempfile.mkdtemp(prefix="gemma-nb-editable-")
        loader = os.path.join(self._staging, "gemma_export.py")
        with open(loader, "w", encoding="utf-8") as file:
            file.write(_LOADER.format(folder=folder, init=os.path.join(folder, "__init__.py")))
        build_data["force_include_editable"][loader] = "gemma_export.py"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if self._staging:
            shutil.rmtree(self._staging, ignore_errors=True)
