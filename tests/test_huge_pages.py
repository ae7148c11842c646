"""An int4-cpu folder's weights run from huge-page-backed memory (gemma_nb.huge_pages): the data
index places every weight, the logits are those of the mapped file, and what cannot use it
(no index, huge pages off) maps the file as before."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from onnx import TensorProto, helper, load_model

import gemma_nb
from gemma_nb import huge_pages, mapped_pages
from gemma_nb.folder import DATA_FILE, DATA_INDEX_FILE, GRAPH_FILE
from gemma_nb.mapped_pages import file_mappings

# Huge-page weights use Linux's transparent huge pages (elsewhere read_weights returns None by
# design and the file is mapped), and whether a process maps the data file is told by Linux's
# /proc/self/smaps: these tests run wherever the feature exists, as in CI.
linux_only = pytest.mark.skipif(not mapped_pages.ON_LINUX,
                                reason="transparent huge pages and /proc/self/smaps are Linux's")

IDS = list(range(2, 30))


def external_weights(folder) -> dict[str, dict]:
    """Every initializer the graph keeps in the data file, as the ONNX graph itself places it."""
    graph = load_model(folder / GRAPH_FILE, load_external_data=False).graph
    placed = {}
    for tensor in graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL:
            where = {entry.key: entry.value for entry in tensor.external_data}
            assert where["location"] == DATA_FILE
            placed[tensor.name] = {"dtype": helper.tensor_dtype_to_np_dtype(tensor.data_type).name,
                                   "shape": list(tensor.dims), "offset": int(where["offset"]),
                                   "bytes": int(where["length"])}
    return placed


def test_the_data_index_places_every_weight_of_the_graph(tiny_gemma2_int4_cpu):
    index = json.loads((tiny_gemma2_int4_cpu / DATA_INDEX_FILE).read_text())
    placed = external_weights(tiny_gemma2_int4_cpu)
    assert len(placed) > 20 and index == placed


@linux_only
def test_weights_in_huge_page_memory_give_the_mapped_files_logits(tiny_gemma2_int4_cpu,
                                                                   monkeypatch):
    data_file = tiny_gemma2_int4_cpu / DATA_FILE
    monkeypatch.setattr(huge_pages, "huge_pages_enabled", lambda: True)
    read = gemma_nb.load(tiny_gemma2_int4_cpu, threads=1)
    assert read.session.gemma_nb_weights is not None and file_mappings(data_file) == []
    read_logits = read.logits(IDS)
    del read

    monkeypatch.setattr(huge_pages, "huge_pages_enabled", lambda: False)
    mapped = gemma_nb.load(tiny_gemma2_int4_cpu, threads=1)
    assert mapped.session.gemma_nb_weights is None and file_mappings(data_file) != []
    np.testing.assert_array_equal(read_logits, mapped.logits(IDS))


@linux_only
def test_a_folder_exported_before_the_index_maps_its_file(tiny_gemma2_int4_cpu, tmp_path,
                                                          monkeypatch):
    old = tmp_path / "old"
    shutil.copytree(tiny_gemma2_int4_cpu, old)
    (old / DATA_INDEX_FILE).unlink()
    monkeypatch.setattr(huge_pages, "huge_pages_enabled", lambda: True)
    model = gemma_nb.load(old, threads=1)
    assert model.session.gemma_nb_weights is None and file_mappings(old / DATA_FILE) != []
    assert np.isfinite(model.logits(IDS)).all()


@linux_only
def test_a_data_file_shorter_than_its_index_is_a_clear_error(tiny_gemma2_int4_cpu, tmp_path,
                                                             monkeypatch):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_gemma2_int4_cpu, broken)
    data = broken / DATA_FILE
    data.write_bytes(data.read_bytes()[:data.stat().st_size // 2])
    monkeypatch.setattr(huge_pages, "huge_pages_enabled", lambda: True)
    with pytest.raises(gemma_nb.ModelFolderError, match="ends before weight .*export it again"):
        gemma_nb.load(broken, threads=1)


@pytest.mark.parametrize("setting, enabled", [("always [madvise] never\n", True),
                                              ("[always] madvise never\n", True),
                                              ("always madvise [never]\n", False)])
def test_huge_pages_are_used_where_the_kernel_gives_them(tmp_path, setting, enabled):
    path = tmp_path / "enabled"
    path.write_text(setting)
    assert huge_pages.huge_pages_enabled(path) is enabled
    assert huge_pages.huge_pages_enabled(tmp_path / "absent") is False


@linux_only
def test_a_machine_short_of_memory_keeps_the_file_mapped(tiny_gemma2_int4_cpu, monkeypatch):
    """Read weights cannot be reclaimed as the file's pages can: under twice their size
    available, the file stays mapped."""
    size = (tiny_gemma2_int4_cpu / DATA_FILE).stat().st_size
    monkeypatch.setattr(huge_pages, "huge_pages_enabled", lambda: True)
    assert huge_pages.read_weights(tiny_gemma2_int4_cpu, available=2 * size - 1) is None
    assert huge_pages.read_weights(tiny_gemma2_int4_cpu, available=2 * size) is not None


@linux_only
def test_an_index_that_is_not_json_is_a_clear_error(tiny_gemma2_int4_cpu, tmp_path, monkeypatch):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_gemma2_int4_cpu, broken)
    (broken / DATA_INDEX_FILE).write_text("{not json")
    monkeypatch.setattr(huge_pages, "huge_pages_enabled", lambda: True)
    with pytest.raises(gemma_nb.ModelFolderError, match="not valid JSON.*export the folder again"):
        gemma_nb.load(broken, threads=1)


@linux_only
def test_a_missing_data_file_is_a_clear_error(tiny_gemma2_int4_cpu, tmp_path, monkeypatch):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_gemma2_int4_cpu, broken)
    (broken / DATA_FILE).unlink()
    monkeypatch.setattr(huge_pages, "huge_pages_enabled", lambda: True)
    with pytest.raises(gemma_nb.ModelFolderError, match="onnx.data is missing.*export it again"):
        gemma_nb.load(broken, threads=1)
