"""An `int4-cpu` folder's weights read into memory backed by 2 MB pages, for ONNX Runtime to use
in place.

ONNX Runtime maps each weight of `model.onnx.data` on its own, in 4 KB pages, and `Q4MatMul`
reads every weight once a decode step: 1.5 GB on the 2B shape, 370,000 pages, each a TLB miss
and a stop for the hardware's stream prefetchers. Read once into one anonymous buffer that Linux
backs with transparent huge pages (`MADV_HUGEPAGE`) and handed over with
`SessionOptions.add_initializer` (which does not copy), the 2B shape's decode ran 1.03-1.13x
faster (docs/performance.md). The cost is reading the file at load, and memory the kernel
cannot reclaim as it can a file's pages. Where the kernel has transparent huge pages off, the
machine has less than twice the weights' size available, the folder has no data index
(exported before it), or this is not Linux, `read_weights` returns None and ONNX Runtime maps
the file.
"""

from __future__ import annotations

import json
import mmap
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .errors import ModelFolderError
from .folder import DATA_FILE, DATA_INDEX_FILE
from .mapped_pages import ON_LINUX

__all__ = ["HugePageWeights", "read_weights", "huge_pages_enabled"]

HUGE_PAGE = 2 << 20
MEMORY_FACTOR = 2  # available memory, in weights' sizes, below which the file stays mapped
READ_CHUNK = 64 << 20  # bytes a read: two threads keep two copies from the page cache going
THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


@dataclass
class HugePageWeights:
    """The initializers to hand to a session, over `buffer`, which must outlive the session."""

    initializers: dict[str, ort.OrtValue]
    buffer: mmap.mmap


def huge_pages_enabled(setting: Path = THP_SETTING) -> bool:
    """Whether this kernel gives transparent huge pages to memory that asks (`[madvise]` or
    `[always]`, not `[never]`)."""
    try:
        return "[never]" not in setting.read_text()
    except OSError:
        return False


def read_weights(folder: Path, available: int | None) -> HugePageWeights | None:
    """`folder`'s weights in huge-page-backed memory, or None where that cannot help (above).
    `available`: the bytes of memory the machine can give, None where it cannot be told."""
    index_file, data = folder / DATA_INDEX_FILE, folder / DATA_FILE
    if not ON_LINUX or not huge_pages_enabled() or not index_file.is_file():
        return None
    if not data.is_file():
        raise ModelFolderError(f"{data} is missing: the folder is incomplete; export it again")
    size = data.stat().st_size
    if available is not None and available < MEMORY_FACTOR * size:
        return None
    try:
        index = json.loads(index_file.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFolderError(f"{index_file} is not valid JSON ({exc}); export the folder "
                               "again") from None
    short = [name for name, t in index.items() if t["offset"] + t["bytes"] > size]
    if short:
        raise ModelFolderError(f"{data} ends before weight {short[0]!r} ({size} bytes): the folder "
                               "is incomplete; export it again")
    buffer = mmap.mmap(-1, size + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buffer.madvise(mmap.MADV_HUGEPAGE)
    whole = np.frombuffer(buffer, dtype=np.uint8)
    start = -whole.ctypes.data % HUGE_PAGE  # the first 2 MB boundary: pages line up with the data
    file_bytes = whole[start:start + size]
    read_into(data, file_bytes)
    initializers = {
        name: ort.OrtValue.ortvalue_from_numpy(
            file_bytes[t["offset"]:t["offset"] + t["bytes"]].view(t["dtype"]).reshape(t["shape"]))
        for name, t in index.items()
    }
    return HugePageWeights(initializers, buffer)


def read_into(path: Path, out: np.ndarray) -> None:
    """The whole of `path` into `out` (its size), in chunks read by two threads."""
    fd = os.open(path, os.O_RDONLY)
    try:
        def read_chunk(offset: int) -> None:
            view = memoryview(out[offset:offset + READ_CHUNK])
            while view:
                got = os.preadv(fd, [view], offset)
                if got == 0:
                    raise ModelFolderError(f"{path} was shortened while it was read")
                view, offset = view[got:], offset + got

        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(read_chunk, range(0, out.size, READ_CHUNK)))
    finally:
        os.close(fd)
