"""The wheel's build hook: the CPU kernel, and editable installs of `export/` as `gemma_export`.

The CPU kernel: gemma_nb/kernels/build.py compiles q4_matmul.cc (the ops of `--dtype int4-cpu`)
beside its source, and a wheel carries the library. A failed build (no compiler, no network for
onnxruntime's headers) does not fail the install: it is reported, and the reason kept for the
runtime's error message; `gemma-nb build-kernel` can build it later.

The exporter: the wheel force-includes export/ as gemma_export/. An editable install puts the
project root on sys.path, where gemma_nb is found, but hatchling cannot rename a folder in one
(pfmoore/editables#20): this hook adds a `gemma_export` module to the editable wheel that loads
export/__init__.py in its place. Submodules then come from export/, edits show on the next
import, and nothing is needed at run time, so `pip install --no-deps -e .` works.
"""

from __future__ import annotations

import importlib.util
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


class GemmaNbBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        self._staging = None
        if self.target_name != "wheel":
            return
        self._build_kernel(version, build_data)
        if version == "editable":
            self._map_export(build_data)

    def _build_kernel(self, version: str, build_data: dict[str, Any]) -> None:
        path = os.path.join(self.root, "gemma_nb", "kernels", "build.py")
        spec = importlib.util.spec_from_file_location("gemma_nb_kernel_build", path)
        builder = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(builder)  # standard library only: nothing is installed yet
        try:
            shipped = builder.build(builder.SOURCE_DIR)
        except (builder.KernelBuildError, OSError) as exc:
            shipped = builder.SOURCE_DIR / builder.BUILD_ERROR_FILE
            shipped.write_text(f"{exc}\n")
            self.app.display_warning(f"gemma-nb: the int4-cpu CPU kernel was not built: {exc}")
        if version != "editable":  # the library is git-ignored: include it by name
            build_data["force_include"][str(shipped)] = f"gemma_nb/kernels/{shipped.name}"
            build_data["pure_python"] = False
            build_data["infer_tag"] = True

    def _map_export(self, build_data: dict[str, Any]) -> None:
        folder = os.path.join(self.root, "export")
        self._staging = tempfile.mkdtemp(prefix="gemma-nb-editable-")
        loader = os.path.join(self._staging, "gemma_export.py")
        with open(loader, "w", encoding="utf-8") as file:
            file.write(_LOADER.format(folder=folder, init=os.path.join(folder, "__init__.py")))
        build_data["force_include_editable"][loader] = "gemma_export.py"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if self._staging:
            shutil.rmtree(self._staging, ignore_errors=True)
