"""What a task carries instead of the model: where its folder is and how to run it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ModelRef", "fingerprint"]


def fingerprint(folder: Path) -> str:
    """The names and sizes of a folder's files, hashed: a worker that sees a folder with this
    fingerprint at the notebook's path sees the same export (reading gigabytes to hash them
    would cost more than the job)."""
    files = sorted((p.relative_to(folder).as_posix(), p.stat().st_size)
                   for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256(json.dumps(files).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ModelRef:
    path: str  # the folder on the notebook's machine
    provider: str
    fingerprint: str

    @classmethod
    def of(cls, model: Any) -> ModelRef:
        path = Path(model.path).resolve()
        return cls(str(path), model.provider, fingerprint(path))

    @property
    def upload_name(self) -> str:
        """The folder's name in a worker's directory when it was uploaded there."""
        return f"gemma-nb-{Path(self.path).name}-{self.fingerprint}"
