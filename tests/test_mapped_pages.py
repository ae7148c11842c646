"""Resident pages of the mapped weight file are given back after load, and nothing is lost."""

from __future__ import annotations

import mmap

import numpy as np
import pytest

import gemma_nb
from gemma_nb import mapped_pages
from gemma_nb import model as model_module
from gemma_nb.folder import DATA_FILE
from gemma_nb.mapped_pages import file_mappings, release_resident_pages

# What a process has resident is only told by Linux's /proc/self/smaps, and madvise(2) is POSIX
# but not on Windows: elsewhere release is a no-op, which the last test checks on any OS.
linux_only = pytest.mark.skipif(not mapped_pages.ON_LINUX,
                                reason="needs /proc/self/smaps and madvise(2), which are Linux's")

PAGES = 64


def _mapped_copy(path):
    """A private, writable mapping of `path` with every page read, as onnxruntime maps weights."""
    with open(path, "rb") as f:
        mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    assert np.frombuffer(mapping, np.uint8).sum() >= 0  # touches every page
    return mapping


def _resident(path) -> int:
    return sum(m.resident for m in file_mappings(path))


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "weights.bin"
    data = np.random.default_rng(0).integers(0, 256, PAGES * mmap.PAGESIZE, dtype=np.uint8)
    path.write_bytes(data.tobytes())
    return path, data


@linux_only
def test_released_pages_are_read_back_from_the_file(weights):
    path, data = weights
    mapping = _mapped_copy(path)
    assert _resident(path) == data.nbytes

    assert release_resident_pages(path) == data.nbytes
    assert _resident(path) == 0
    np.testing.assert_array_equal(np.frombuffer(mapping, np.uint8), data)
    mapping.close()


@linux_only
def test_a_mapping_written_to_is_kept(weights):
    path, data = weights
    mapping = _mapped_copy(path)
    written = (int(data[0]) + 1) % 256
    mapping[0] = written  # the first page is a private copy now

    assert release_resident_pages(path) == 0
    assert _resident(path) == data.nbytes
    assert mapping[0] == written
    mapping.close()


@linux_only
def test_other_files_stay_resident(weights, tmp_path):
    path, data = weights
    other = tmp_path / "other.bin"
    other.write_bytes(data.tobytes())
    mappings = [_mapped_copy(path), _mapped_copy(other)]

    release_resident_pages(path)
    assert _resident(other) == data.nbytes
    for mapping in mappings:
        mapping.close()


def test_a_file_not_mapped_releases_nothing(tmp_path):
    assert file_mappings(tmp_path / "absent.bin") == []
    assert release_resident_pages(tmp_path / "absent.bin") == 0


@linux_only
def test_loading_int4_leaves_no_weight_page_resident_and_same_logits(export_once, tiny_gemma2_hf,
                                                                     monkeypatch):
    folder = export_once(tiny_gemma2_hf, "tiny-gemma2-hf", "int4")
    data_file = folder / DATA_FILE
    ids = list(range(2, 30))

    released = gemma_nb.load(folder, threads=1)
    assert _resident(data_file) == 0
    released_logits = released.logits(ids)
    del released

    monkeypatch.setattr(model_module, "release_resident_pages", lambda path: 0)
    kept = gemma_nb.load(folder, threads=1)
    assert _resident(data_file) > 0  # what load gives back: the packed weights' scales
    np.testing.assert_array_equal(released_logits, kept.logits(ids))


def test_off_linux_release_is_a_no_op(tmp_path, monkeypatch):
    def no_madvise():
        raise AssertionError("madvise looked up off Linux")

    monkeypatch.setattr(mapped_pages, "ON_LINUX", False)
    monkeypatch.setattr(mapped_pages, "_madvise", no_madvise)
    assert release_resident_pages(tmp_path / "weights.bin") == 0
