"""Rewrite an int4 gemma-nb folder for the trial kernel: every 4-bit MatMulNBits becomes
Q4MatMul and the embedding's GatherBlockQuantized becomes Q4Gather on the same tiles (the table
is tied, and stays one copy). Scales go from fp32 to fp16; zero points become minimums.

    python benchmarks/q4_kernel_trial/convert.py /tmp/peers/ours-g2b-int4 /tmp/q4trial/g2b
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from gemma_export.quant import PackedWeight
from layout import tiles_from_packed

DOMAIN = "gemma_nb.trial"


def tiled(inits: dict, node: onnx.NodeProto) -> list[np.ndarray]:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if len(node.input) < 4:
        raise SystemExit(f"{node.name}: only MatMulNBits with zero points convert")
    b, scales, zero = (numpy_helper.to_array(inits[name]) for name in node.input[1:4])
    weight = PackedWeight(attrs["bits"], attrs["block_size"], b, scales.astype(np.float32), zero,
                          attrs["N"], attrs["K"])
    try:
        return list(tiles_from_packed(weight))
    except ValueError as exc:
        raise SystemExit(f"{node.name}: {exc}") from None


def retype(node: onnx.NodeProto, op: str, inputs: list[str]) -> None:
    node.op_type, node.domain = op, DOMAIN
    del node.attribute[:]
    del node.input[:]
    node.input.extend(inputs)


def convert(src: Path, dst: Path) -> None:
    stored = onnx.load(str(src / "model.onnx"), load_external_data=False).graph.initializer
    offsets = {i.name: {e.key: e.value for e in i.external_data} for i in stored}
    model = onnx.load(str(src / "model.onnx"))
    inits = {i.name: i for i in model.graph.initializer}
    replaced: dict[str, list[str]] = {}  # MatMulNBits weight name -> its tile initializers
    new: list[onnx.TensorProto] = []
    for node in model.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        weight = node.input[1]
        if weight not in replaced:
            names = [f"{weight}.tiles", f"{weight}.tile_scales", f"{weight}.tile_mins"]
            new += [numpy_helper.from_array(a, nm) for a, nm in zip(tiled(inits, node), names)]
            replaced[weight] = names
        retype(node, "Q4MatMul", [node.input[0], *replaced[weight]])
    for node in model.graph.node:
        if node.op_type == "GatherBlockQuantized":  # the rows of a table already tiled above
            table = [w for w in replaced if offsets[w] and offsets[w] == offsets[node.input[0]]]
            if not table:
                raise SystemExit(f"{node.name}: its table is not a MatMulNBits weight (untied)")
            retype(node, "Q4Gather", [*replaced[table[0]], node.input[1]])
    used = {name for node in model.graph.node for name in node.input}
    kept = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept + new)
    model.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    dst.mkdir(parents=True, exist_ok=False)
    onnx.save(model, str(dst / "model.onnx"), save_as_external_data=True,
              location="model.onnx.data", size_threshold=1024)
    for f in src.iterdir():
        if f.name not in ("model.onnx", "model.onnx.data"):
            shutil.copy(f, dst / f.name)
    print(f"{len(replaced)} weights tiled: {dst}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="an int4 folder from gemma-nb export")
    ap.add_argument("dst", type=Path, help="a new folder")
    args = ap.parse_args()
    convert(args.src, args.dst)
