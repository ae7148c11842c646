"""Session settings: weights are packed on all threads at load when memory allows, and that
changes nothing in what the model computes."""

from __future__ import annotations

import os

import numpy as np
import pytest

import gemma_nb
from gemma_nb import session
from gemma_nb.session import available_memory, packs_in_parallel, prepack_in_parallel


def test_available_memory_is_some_of_this_machines_memory():
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < available_memory() <= total


def test_packing_in_parallel_needs_three_times_the_weight_files(tmp_path, monkeypatch):
    (tmp_path / "model.onnx").write_bytes(b"g" * 100)
    (tmp_path / "model.onnx.data").write_bytes(b"w" * 900)
    (tmp_path / "tokenizer.model").write_bytes(b"t" * 100_000)  # not a weight
    graph = tmp_path / "model.onnx"
    for available, parallel in ((2999, False), (3000, True), (None, False)):
        monkeypatch.setattr(session, "available_memory", lambda: available)
        assert prepack_in_parallel(graph) is parallel


@pytest.mark.slow
def test_weights_packed_in_parallel_give_the_same_logits(real_int4_dir, monkeypatch):
    ids = list(range(2, 40))
    logits = {}
    for memory, parallel in ((2**50, True), (0, False)):
        monkeypatch.setattr(session, "available_memory", lambda: memory)
        model = gemma_nb.load(real_int4_dir, threads=2)
        assert packs_in_parallel(model.session) is parallel
        logits[parallel] = model.logits(ids)
        del model
    np.testing.assert_array_equal(logits[True], logits[False])
