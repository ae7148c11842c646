"""A .llamafile is an APE executable that is also a zip: its GGUF is read in place, never copied.

The fake llamafiles here are an executable-looking prefix followed by a zip appended to it (as
cosmopolitan's zip tooling does, so member offsets count from the start of the file).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

import gemma_nb
from gemma_export import CorruptWeightsError, MissingWeightsError, export
from gemma_export.gguf_source import GGUFSource
from gemma_export.sources import open_source

# An MZ header as APE executables start ("MZqFpD"), padded; 4099 bytes puts the member's data at
# an odd offset, so nothing can rely on the GGUF starting aligned inside the file.
APE_PREFIX = b"MZqFpD='\n" + b"\0" * 4090


def make_llamafile(path: Path, members: dict[str, bytes],
                   compression: int = zipfile.ZIP_STORED) -> Path:
    path.write_bytes(APE_PREFIX)
    with zipfile.ZipFile(path, "a", compression=compression) as archive:
        archive.writestr("README.txt", "not the weights")  # real llamafiles carry .args etc.
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def tiny_llamafile(tiny_gemma2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("llamafile")
    return make_llamafile(folder / "tiny-gemma2.llamafile",
                          {"tiny-gemma2.gguf": tiny_gemma2_gguf.read_bytes()})


def test_fake_llamafile_is_an_executable_and_a_zip(tiny_llamafile):
    assert tiny_llamafile.read_bytes()[:2] == b"MZ"
    assert zipfile.is_zipfile(tiny_llamafile)
    with zipfile.ZipFile(tiny_llamafile) as archive:
        member = archive.getinfo("tiny-gemma2.gguf")
        assert member.compress_type == zipfile.ZIP_STORED
        assert member.header_offset >= len(APE_PREFIX)


def test_llamafile_is_read_in_place(tiny_llamafile, tiny_gemma2_gguf):
    source = open_source(tiny_llamafile)
    assert isinstance(source, GGUFSource)
    data = source.reader.data
    # A view into a memory map of the llamafile itself: no copy, no temporary GGUF file.
    assert isinstance(data, np.memmap)
    assert Path(data.filename) == tiny_llamafile.resolve()
    assert not data.flags.owndata
    assert data.nbytes == tiny_gemma2_gguf.stat().st_size
    assert np.array_equal(data, np.fromfile(tiny_gemma2_gguf, dtype=np.uint8))
    for tensor in source.reader.tensors:
        assert np.shares_memory(tensor.data, data), tensor.name


def test_llamafile_source_matches_the_plain_gguf(tiny_llamafile, tiny_gemma2_gguf):
    inside, plain = open_source(tiny_llamafile), open_source(tiny_gemma2_gguf)
    assert inside.config == plain.config
    assert inside.tokenizer_model() == plain.tokenizer_model()
    assert inside.source_names() == plain.source_names()


def test_llamafile_export_gives_the_same_logits_as_the_gguf(
    tiny_llamafile, tiny_gemma2_gguf, export_once, tmp_path
):
    out = export(tiny_llamafile, tmp_path / "from-llamafile", progress=False)
    from_llamafile = gemma_nb.load(out)
    from_gguf = gemma_nb.load(export_once(tiny_gemma2_gguf, "tiny-gemma2-gguf"))
    ids = from_gguf.tokenizer.encode("The quick brown fox jumps over the lazy dog, twice over.")
    assert len(ids) > 8  # past the sliding window
    np.testing.assert_array_equal(from_llamafile.logits(ids), from_gguf.logits(ids))
    exporter = from_llamafile.info["exporter"]
    assert exporter["source"] == tiny_llamafile.name


def test_compressed_gguf_member_raises_corrupt_weights(tiny_gemma2_gguf, tmp_path):
    src = make_llamafile(tmp_path / "deflated.llamafile",
                         {"tiny-gemma2.gguf": tiny_gemma2_gguf.read_bytes()},
                         compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(CorruptWeightsError, match="compressed"):
        export(src, tmp_path / "out", progress=False)
    assert [p.name for p in tmp_path.iterdir()] == [src.name]


def test_llamafile_without_gguf_member_raises_missing_weights(tmp_path):
    src = make_llamafile(tmp_path / "empty.llamafile", {"weights.bin": b"\0" * 64})
    with pytest.raises(MissingWeightsError, match=r"\.gguf"):
        export(src, tmp_path / "out", progress=False)
    assert [p.name for p in tmp_path.iterdir()] == [src.name]
