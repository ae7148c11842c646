"""Build gemma-nb's CPU kernel library (SOURCES: the int4-cpu ops, and logit_stats.cc) with this
machine's C++ compiler.

Installing gemma-nb builds it (the wheel's build hook); `gemma-nb build-kernel` builds it again,
for an install made without a compiler or offline. The library's name carries the hash of its
sources, so an edited source never runs with a stale library.

onnxruntime's C API headers are in no PyPI wheel. Debian's libonnxruntime-dev package has them
(onnxruntime 1.21.0, C API 21), and the C API is versioned and backward compatible: a library
built against API 21 loads into every onnxruntime from 1.21 on. The package is fetched once from
Debian's archive, checked against its sha256, and its headers kept in the cache; or
GEMMA_NB_ORT_INCLUDE names a folder that holds onnxruntime_c_api.h.

Standard library only: the build hook loads this file before any dependency is installed.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path

__all__ = ["SOURCE_DIR", "BUILD_ERROR_FILE", "KernelBuildError", "library_name", "library_dirs",
           "build", "ort_headers"]

SOURCE_DIR = Path(__file__).parent
SOURCES = ("q4_matmul.cc", "attention.cc", "decoder_layer.cc", "geglu.cc", "logit_stats.cc")
INCLUDED = ("attention.h", "attention_math.inc", "decoder_layer.h", "exp16.h", "geglu.h", "geglu_math.inc",
            "ort_values.h", "q4_projection.h", "rms_norm.h", "vector8.inc")
BUILD_ERROR_FILE = "build-error.txt"  # why the install-time build failed, for the runtime's error
HEADERS_URL = ("http://deb.debian.org/debian/pool/main/o/onnxruntime/"
               "libonnxruntime-dev_1.21.0+dfsg-1_amd64.deb")
HEADERS_SHA256 = "14f7d959d5deacbcf1504830d4189f91fc67382b399ed9ae9d3aa9c4050ced08"
HEADERS_IN_PACKAGE = "usr/include/onnxruntime/"
# No -march=native: the library picks its path (AMX, AVX-512 VNNI, generic) on the CPU it runs on.
FLAGS = ["-O3", "-std=c++17", "-fPIC", "-shared"]


class KernelBuildError(Exception):
    """The kernel library could not be built; the message says what is missing."""


def cache_root() -> Path:
    """gemma-nb's cache (gemma_nb.models.cache_dir, which this stdlib-only file cannot import)."""
    return Path(os.environ.get("GEMMA_NB_CACHE", Path.home() / ".cache" / "gemma-nb"))


def library_name() -> str:
    digest = hashlib.sha256()
    for name in (*SOURCES, *INCLUDED):
        digest.update((SOURCE_DIR / name).read_bytes())
    digest = digest.hexdigest()[:12]
    return f"libgemma_nb_q4-{digest}.so"


def library_dirs() -> list[Path]:
    """Where the library is looked for, in order: beside its source (the install's build), then
    the cache (`gemma-nb build-kernel` where the package folder is read-only)."""
    return [SOURCE_DIR, cache_root() / "kernels"]


def _deb_member(deb: bytes, prefix: str) -> bytes:
    """A member of a .deb (an `ar` archive: 8-byte magic, then 60-byte headers)."""
    if not deb.startswith(b"!<arch>\n"):
        raise KernelBuildError("the downloaded file is not a Debian package")
    at = 8
    while at + 60 <= len(deb):
        name, size = deb[at:at + 16].decode().strip().rstrip("/"), int(deb[at + 48:at + 58])
        if name.startswith(prefix):
            return deb[at + 60:at + 60 + size]
        at += 60 + size + size % 2
    raise KernelBuildError(f"the Debian package has no {prefix}*")


def ort_headers() -> Path:
    """A folder holding onnxruntime's C and C++ API headers."""
    given = os.environ.get("GEMMA_NB_ORT_INCLUDE")
    if given:
        if not (Path(given) / "onnxruntime_c_api.h").is_file():
            raise KernelBuildError(f"GEMMA_NB_ORT_INCLUDE={given} has no onnxruntime_c_api.h")
        return Path(given)
    folder = cache_root() / "onnxruntime-headers-1.21.0"
    if (folder / "onnxruntime_lite_custom_op.h").is_file():
        return folder
    try:
        with urllib.request.urlopen(HEADERS_URL, timeout=120) as response:
            deb = response.read()
    except OSError as exc:
        raise KernelBuildError(f"could not fetch onnxruntime's headers from {HEADERS_URL} "
                               f"({exc}); set GEMMA_NB_ORT_INCLUDE to a folder holding "
                               "onnxruntime_c_api.h") from None
    if hashlib.sha256(deb).hexdigest() != HEADERS_SHA256:
        raise KernelBuildError(f"{HEADERS_URL} does not have the expected sha256")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".headers.", dir=folder.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(_deb_member(deb, "data.tar"))) as data:
            for member in data.getmembers():
                name = member.name.removeprefix("./")
                if member.isfile() and name.startswith(HEADERS_IN_PACKAGE):
                    target = staging / name.removeprefix(HEADERS_IN_PACKAGE)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data.extractfile(member).read())
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def compiler() -> str:
    asked = os.environ.get("CXX")
    found = shutil.which(asked) if asked else shutil.which("c++") or shutil.which("g++")
    if not found:
        where = f"CXX={asked} is not a program" if asked else "no c++ or g++ on PATH"
        raise KernelBuildError(f"no C++ compiler ({where}); install one (Debian/Ubuntu: "
                               "apt install g++) or set CXX")
    return found


def build(out_dir: Path | None = None) -> Path:
    """Compile the library into `out_dir` (default: beside its source if writable, else the
    cache) and return its path. The file appears whole or not at all."""
    if out_dir is None:
        out_dir = SOURCE_DIR if os.access(SOURCE_DIR, os.W_OK) else library_dirs()[-1]
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / library_name()
    if target.is_file():
        return target
    command = [compiler(), *FLAGS, f"-I{ort_headers()}", *(str(SOURCE_DIR / n) for n in SOURCES)]
    with tempfile.TemporaryDirectory(dir=out_dir) as scratch:
        built = Path(scratch) / target.name
        result = subprocess.run([*command, "-o", str(built)], capture_output=True, text=True)
        if result.returncode:
            raise KernelBuildError(f"{command[0]} failed on {', '.join(SOURCES)}:\n"
                                   f"{result.stderr[-2000:]}")
        os.replace(built, target)
    (out_dir / BUILD_ERROR_FILE).unlink(missing_ok=True)
    for stale in out_dir.glob("libgemma_nb_q4-*.so"):  # built from earlier sources
        if stale != target:
            stale.unlink()
    return target
