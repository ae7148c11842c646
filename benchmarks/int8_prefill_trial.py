"""Trial, not shipped: int8 layer weights with per-row int8 activations for a fast prefill.

docs/performance.md ("Prefill") reports what this measured. From an fp32 export it writes
variants whose layer `MatMul`s run on MLAS's int8 GEMM (which uses AMX where the CPU has it):

- `per-tensor`: `DynamicQuantizeMatMul` (one activation scale per run);
- `per-row`: the activations quantized a row at a time in the graph (`ReduceMax(Abs)`, `Div`,
  `Round`, + 128 as uint8), then `MatMulInteger` and both scales applied to its int32 result.

Weights are int8 with one scale per output column. With `--alpha A > 0` SmoothQuant's scales
s = max|x|^A / max|w|^(1-A) (per input channel, from a calibration text) are folded into the
weights first: into the norms before q|k|v and gate|up, into the v columns before o (one scale
per head dimension, shared by the query heads), and into the up columns before down. It prints
the perplexity of each variant on tests/data/perplexity.txt, and prefill / decode tok/s
(512-token prompt, 2 threads, alternating, medians of 3) against the int4 folder given.

    python benchmarks/int8_prefill_trial.py FP32_FOLDER INT4_FOLDER --alpha 0 0.5
"""

from __future__ import annotations

import argparse
import shutil
import statistics
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import gemma_nb
from gemma_nb import bench
from gemma_nb.folder import read_model_info
from quant_accuracy import TEXT, perplexity  # the perplexity docs/quantization.md reports

ROOT = Path(__file__).resolve().parent.parent
CALIBRATION = (ROOT / "README.md").read_text()  # not the TEXT the perplexity is measured on
CALIBRATION_TOKENS = 1024


def layer_matmuls(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    return [n for n in graph.node if n.op_type == "MatMul" and n.name.startswith("layers.")]


def save_variant(model: onnx.ModelProto, source: Path, out: Path) -> Path:
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(source, out, ignore=shutil.ignore_patterns("model.onnx*"))
    onnx.save(model, str(out / "model.onnx"), save_as_external_data=True,
              location="model.onnx.data")
    return out


def activation_maxima(source: Path, work: Path) -> dict[str, np.ndarray]:
    """max |x| per input channel of every layer MatMul, over the calibration text."""
    model = onnx.load(str(source / "model.onnx"))
    inputs = [n.input[0] for n in layer_matmuls(model.graph)]
    model.graph.output.extend(helper.make_tensor_value_info(x, TensorProto.FLOAT, None)
                              for x in inputs)
    probe = gemma_nb.load(save_variant(model, source, work / "calibration"), threads=2)
    ids = probe.tokenizer.encode(CALIBRATION)[:CALIBRATION_TOKENS]
    cache = probe.new_cache(len(ids))
    binding = cache.binding(probe.session)
    binding.bind_cpu_input("input_ids", np.array([ids], np.int64))
    binding.bind_cpu_input("seqlens_k", np.array([len(ids) - 1], np.int32))
    binding.bind_cpu_input("total_sequence_length", np.array(len(ids), np.int32))
    binding.bind_cpu_input("logits_index", np.array([len(ids) - 1], np.int64))
    for name in ["logits", *inputs]:
        binding.bind_output(name)
    probe.session.run_with_iobinding(binding)
    names = [o.name for o in probe.session.get_outputs()]
    values = dict(zip(names, binding.get_outputs()))
    return {x: np.abs(values[x].numpy()).reshape(-1, values[x].shape()[-1]).max(0)
            for x in inputs}


class Weights:
    """The fp32 graph's initializers, read and written as numpy arrays."""

    def __init__(self, graph: onnx.GraphProto):
        self.protos = {i.name: i for i in graph.initializer}

    def __getitem__(self, name: str) -> np.ndarray:
        return numpy_helper.to_array(self.protos[name]).astype(np.float32)

    def __setitem__(self, name: str, value: np.ndarray) -> None:
        self.protos[name].CopyFrom(numpy_helper.from_array(value, name))


def smoothing(x_max: np.ndarray, w_max: np.ndarray, alpha: float) -> np.ndarray:
    return np.maximum(x_max, 1e-5) ** alpha / np.maximum(w_max, 1e-5) ** (1 - alpha)


def fold_smoothing(graph: onnx.GraphProto, cfg, maxima: dict[str, np.ndarray],
                   alpha: float) -> None:
    w = Weights(graph)
    heads, kv_heads, head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    matmul = {n.name: n for n in layer_matmuls(graph)}
    for i in range(cfg.num_layers):
        qkv, o, gate_up, down = (matmul[f"layers.{i}.{k}_1"] for k in ("qkv", "o", "gate_up",
                                                                      "down"))
        for node, norm in ((qkv, f"layers.{i}.input_norm"), (gate_up, f"layers.{i}.pre_ffw_norm")):
            weight = w[node.input[1]]
            s = smoothing(maxima[node.input[0]], np.abs(weight).max(1), alpha)
            w[norm] = w[norm] / s
            w[node.input[1]] = weight * s[:, None]
        weight = w[o.input[1]]
        s = smoothing(maxima[o.input[0]].reshape(heads, head_dim).max(0),
                      np.abs(weight).max(1).reshape(heads, head_dim).max(0), alpha)
        fused = w[qkv.input[1]]
        fused[:, (heads + kv_heads) * head_dim:] /= s  # v: attention output is linear in it
        w[qkv.input[1]] = fused
        w[o.input[1]] = weight * np.tile(s, heads)[:, None]
        weight = w[down.input[1]]
        s = smoothing(maxima[down.input[0]], np.abs(weight).max(1), alpha)
        fused = w[gate_up.input[1]]
        fused[:, fused.shape[1] // 2:] /= s  # up: gelu(gate) * up is linear in it
        w[gate_up.input[1]] = fused
        w[down.input[1]] = weight * s[:, None]


def per_row_matmul(node: onnx.NodeProto, weight: str) -> list[onnx.NodeProto]:
    """x @ W as uint8 rows (own scale each, zero point 128) times int8 columns."""
    x, y, p = node.input[0], node.output[0], node.name
    return [
        helper.make_node("Abs", [x], [f"{p}/abs"]),
        helper.make_node("ReduceMax", [f"{p}/abs", "last_axis"], [f"{p}/max"], keepdims=1),
        helper.make_node("Div", [f"{p}/max", "int8_max"], [f"{p}/scale0"]),
        helper.make_node("Max", [f"{p}/scale0", "tiny"], [f"{p}/scale"]),
        helper.make_node("Div", [x, f"{p}/scale"], [f"{p}/scaled"]),
        helper.make_node("Round", [f"{p}/scaled"], [f"{p}/rounded"]),
        helper.make_node("Add", [f"{p}/rounded", "offset"], [f"{p}/shifted"]),
        helper.make_node("Cast", [f"{p}/shifted"], [f"{p}/q"], to=TensorProto.UINT8),
        helper.make_node("MatMulInteger", [f"{p}/q", weight, "offset_u8", f"{weight}.zp"],
                         [f"{p}/int32"]),
        helper.make_node("Cast", [f"{p}/int32"], [f"{p}/float"], to=TensorProto.FLOAT),
        helper.make_node("Mul", [f"{p}/float", f"{p}/scale"], [f"{p}/rows"]),
        helper.make_node("Mul", [f"{p}/rows", f"{weight}.scale"], [y]),
    ]


def quantize_layers(model: onnx.ModelProto, per_row: bool) -> None:
    graph, w = model.graph, Weights(model.graph)
    layers = {n.name for n in layer_matmuls(graph)}
    nodes, extra = [], []
    for node in graph.node:
        if node.name not in layers:
            nodes.append(node)
            continue
        weight = node.input[1]
        values = w[weight]
        scale = np.maximum(np.abs(values).max(0), 1e-8) / 127
        w[weight] = np.clip(np.round(values / scale), -127, 127).astype(np.int8)
        extra += [numpy_helper.from_array(scale.astype(np.float32), f"{weight}.scale"),
                  numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{weight}.zp")]
        if per_row:
            nodes += per_row_matmul(node, weight)
        else:
            nodes.append(helper.make_node("DynamicQuantizeMatMul",
                                          [node.input[0], weight, f"{weight}.scale",
                                           f"{weight}.zp"], list(node.output),
                                          domain="com.microsoft"))
    if per_row:
        extra += [numpy_helper.from_array(np.array([-1], np.int64), "last_axis"),
                  numpy_helper.from_array(np.array(127, np.float32), "int8_max"),
                  numpy_helper.from_array(np.array(1e-8, np.float32), "tiny"),
                  numpy_helper.from_array(np.array(128, np.float32), "offset"),
                  numpy_helper.from_array(np.array(128, np.uint8), "offset_u8")]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(extra)


def variant(source: Path, work: Path, maxima, alpha: float, per_row: bool) -> Path:
    model = onnx.load(str(source / "model.onnx"))
    _, cfg = read_model_info(source)
    if alpha > 0:
        fold_smoothing(model.graph, cfg, maxima, alpha)
    quantize_layers(model, per_row)
    name = f"{'per-row' if per_row else 'per-tensor'}-alpha{alpha}"
    return save_variant(model, source, work / name)


def perplexity_of(folder: Path) -> float:
    model = gemma_nb.load(folder, threads=2)
    ids = model.tokenizer.encode(TEXT)
    return perplexity(model.logits(ids), ids)


def speeds(folders: list[Path], rounds: int = 3) -> dict[Path, tuple[float, float]]:
    models = {f: gemma_nb.load(f, threads=2) for f in folders}
    prompt = bench._prompt(models[folders[0]], 512)
    runs: dict[Path, list[dict[str, float]]] = {f: [] for f in folders}
    for round_ in range(rounds + 1):  # the first round warms up
        for folder, model in models.items():
            result = bench._once(model, prompt, 32)
            if round_:
                runs[folder].append(result)
    return {f: (statistics.median(r["prefill_tok_s"] for r in rs),
                statistics.median(r["decode_tok_s"] for r in rs)) for f, rs in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fp32", type=Path, help="an fp32 export (gemma-nb export ... --dtype fp32)")
    ap.add_argument("int4", type=Path, help="an int4 export of the same weights, for speed")
    ap.add_argument("--alpha", type=float, nargs="+", default=[0.0, 0.5])
    ap.add_argument("--work", type=Path, default=Path("/tmp/int8-prefill-trial"))
    args = ap.parse_args()
    maxima = activation_maxima(args.fp32, args.work)
    folders = [args.fp32, args.int4] + [variant(args.fp32, args.work, maxima, alpha, per_row)
                                        for per_row in (False, True) for alpha in args.alpha]
    timed = speeds(folders)
    for folder in folders:
        prefill, decode = timed[folder]
        print(f"{folder.name}: perplexity {perplexity_of(folder):.2f}, prefill-512 {prefill:.0f} "
              f"tok/s, decode {decode:.1f} tok/s", flush=True)


if __name__ == "__main__":
    main()
