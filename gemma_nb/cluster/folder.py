"""The model folder, reachable from every worker: by its path where the workers see the same
folder (this machine, a shared filesystem), else uploaded once to each worker, new ones too."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from .ref import ModelRef
from .worker import sees_folder

__all__ = ["share_folder", "folder_upload"]


def folder_upload(ref: ModelRef) -> Any:
    """A Dask worker plugin holding the folder, unpacked into each worker's own directory when
    the worker starts (the scheduler keeps it for workers that join later)."""
    from distributed import WorkerPlugin

    class FolderUpload(WorkerPlugin):
        name = ref.upload_name

        def __init__(self) -> None:
            buffer = io.BytesIO()
            # Stored, not deflated: quantized weights do not compress, and zipping costs time.
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
                for file in sorted(Path(ref.path).iterdir()):
                    archive.write(file, file.name)
            self.data = buffer.getvalue()

        def setup(self, worker: Any) -> None:
            with zipfile.ZipFile(io.BytesIO(self.data)) as archive:
                archive.extractall(Path(worker.local_directory) / ref.upload_name)

    return FolderUpload()


def _plugin_names(dask_scheduler: Any) -> list[str]:
    return list(dask_scheduler.worker_plugins)


def share_folder(client: Any, ref: ModelRef, upload: bool | None = None) -> None:
    """Upload the folder unless every worker already sees it (`upload` forces the choice)."""
    if upload is None:
        upload = not all(client.run(sees_folder, ref).values())
    if upload and ref.upload_name not in client.run_on_scheduler(_plugin_names):
        client.register_plugin(folder_upload(ref), name=ref.upload_name)
