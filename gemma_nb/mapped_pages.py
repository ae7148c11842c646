"""Give back this process's resident pages of a mapped weight file once ONNX Runtime has packed it.

ONNX Runtime maps the folder's external data file, and at load MLAS copies each 4-bit weight,
with its scales, into a packed buffer of its own. It frees the mapping of the 4-bit codes but
keeps those of the scales and zero points, whose pages the packing has read: they stay resident
and count in the process's RSS (350 MB of the 2B shape's 2.8 GB while generating, 36 MB of the
270M's 0.44 GB) though no run reads them again. Such pages are clean copies of the file, so
`madvise(MADV_DONTNEED)` can drop them from this process; a page touched again is read back from
the file (the page cache, usually). Mappings with pages written since (copy-on-write) are left
alone, since dropping those would lose the writes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Mapping", "file_mappings", "release_resident_pages"]

MADV_DONTNEED = 4  # Linux <sys/mman.h>
SMAPS = Path("/proc/self/smaps")
ON_LINUX = sys.platform.startswith("linux")  # smaps and madvise(2) with MADV_DONTNEED = 4


@dataclass(frozen=True)
class Mapping:
    """One mapping of a file in this process, as /proc/self/smaps lists it (sizes in bytes)."""

    start: int
    end: int
    resident: int
    written: int  # private pages copied on write: no longer the file's bytes


def file_mappings(path: str | Path, smaps: Path = SMAPS) -> list[Mapping]:
    """This process's mappings of `path` (none where the OS has no smaps)."""
    target = os.path.realpath(path)
    mappings: list[Mapping] = []
    current: dict[str, int] | None = None
    try:
        lines = smaps.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split(maxsplit=5)
        if "-" in fields[0] and not fields[0].endswith(":"):  # a mapping's header line
            if current is not None:
                mappings.append(_mapping(current))
            start, end = (int(bound, 16) for bound in fields[0].split("-"))
            matches = len(fields) == 6 and fields[5] == target
            current = {"start": start, "end": end} if matches else None
        elif current is not None and fields[0] in ("Rss:", "Anonymous:"):
            current[fields[0][:-1]] = int(fields[1]) * 1024
    if current is not None:
        mappings.append(_mapping(current))
    return mappings


def _mapping(fields: dict[str, int]) -> Mapping:
    return Mapping(fields["start"], fields["end"], fields.get("Rss", 0), fields.get("Anonymous", 0))


def release_resident_pages(path: str | Path) -> int:
    """Drop this process's resident, unwritten pages of `path`'s mappings; returns the bytes
    released (0 off Linux, or where nothing was resident)."""
    if not ON_LINUX:
        return 0
    madvise = _madvise()
    released = 0
    for mapping in file_mappings(path):
        if mapping.resident and not mapping.written:
            if madvise(mapping.start, mapping.end - mapping.start, MADV_DONTNEED) == 0:
                released += mapping.resident
    return released


def _madvise():
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.madvise.restype = ctypes.c_int
    return libc.madvise
