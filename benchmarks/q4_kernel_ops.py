"""gemma-nb's Q4MatMul (`--dtype int4-cpu`) against MatMulNBits (`--dtype int4`), one op, on
the same 4-bit codes: error against numpy, and speed.

One 2304 x 9216 weight shape (the 2B shape's MLP), a chain of distinct weights so they come from
DRAM, not the L3; both ops run side by side in one process, alternating. GEMMA_NB_KERNEL_ISA
picks a slower path of the kernel (generic, avx512-vnni) to compare it too.

    python benchmarks/q4_kernel_ops.py [--rows 1 128 512]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from gemma_export.quant import PackedWeight, dequantize_packed, quantize_asymmetric
from gemma_export.tiles import BLOCK, tiles_from_packed
from gemma_nb.kernels import kernel_isa, kernel_library


def nbits_inputs(p: PackedWeight) -> list[np.ndarray]:
    return [p.B, p.scales, p.zero_points]


def kernel_inputs(p: PackedWeight) -> list[np.ndarray]:
    return list(tiles_from_packed(p))


def quantize(rng: np.random.Generator, n: int, k: int) -> PackedWeight:
    """A random weight as `gemma-nb export --dtype int4` quantizes it (zero points, block 32)."""
    return quantize_asymmetric(rng.standard_normal((n, k)).astype(np.float32) * 0.02, 4, BLOCK)


def chain_model(kind: str, weights: list[list[np.ndarray]], k: int, n: int):
    """y = sum over weights of ReduceSum(x @ W_i^T): every weight is read, the output is tiny."""
    nodes, inits = [], []
    for i, arrays in enumerate(weights):
        names = [f"w{i}.{j}" for j in range(len(arrays))]
        inits += [numpy_helper.from_array(a, nm) for a, nm in zip(arrays, names)]
        if kind == "Q4MatMul":
            nodes.append(helper.make_node("Q4MatMul", ["x", *names], [f"p{i}"], domain="gemma_nb"))
        else:
            nodes.append(helper.make_node("MatMulNBits", ["x", *names], [f"p{i}"], domain="com.microsoft",
                                          K=k, N=n, bits=4, block_size=BLOCK, accuracy_level=4))
        nodes.append(helper.make_node("ReduceSum", [f"p{i}"], [f"r{i}"], keepdims=0))
    nodes.append(helper.make_node("Sum", [f"r{i}" for i in range(len(weights))], ["y"]))
    out = (helper.make_tensor_value_info("p0", TensorProto.FLOAT, ["M", n]) if len(weights) == 1
           else helper.make_tensor_value_info("y", TensorProto.FLOAT, []))
    graph = helper.make_graph(nodes, kind, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["M", k])],
                              [out], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid("com.microsoft", 1),
                                                   helper.make_opsetid("gemma_nb", 1)])


def session(model, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.register_custom_ops_library(str(kernel_library()))
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chain", type=int, default=40)
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 128, 512])
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    k, n = 2304, 9216
    kinds = (("Q4MatMul", kernel_inputs), ("MatMulNBits", nbits_inputs))
    print(f"Q4MatMul's path on this CPU: {kernel_isa()}")

    weight = quantize(rng, n, k)
    dequantized = dequantize_packed(weight)
    for m in (1, 3, 8, 19, 40):  # 19, 40: groups of 16 rows (AMX), of 8 and single rows
        x = rng.standard_normal((m, k)).astype(np.float32)
        reference = x @ dequantized.T
        for kind, inputs in kinds:
            got = session(chain_model(kind, [inputs(weight)], k, n),
                          args.threads).run(None, {"x": x})[0]
            err = np.abs(got - reference).max() / np.abs(reference).max()
            print(f"M={m} {kind}: max |error| / max |numpy| = {err:.4f}")

    weights = [quantize(rng, n, k) for _ in range(args.chain)]
    sessions = {kind: session(chain_model(kind, [inputs(w) for w in weights], k, n), args.threads)
                for kind, inputs in kinds}
    weight_bytes = {kind: sum(a.nbytes for a in inputs(weight)) for kind, inputs in kinds}
    for m in args.rows:
        x = rng.standard_normal((m, k)).astype(np.float32)
        times: dict[str, list[float]] = {kind: [] for kind in sessions}
        for s in sessions.values():
            s.run(None, {"x": x})
        for _ in range(9 if m == 1 else 3):
            for kind, s in sessions.items():
                started = time.perf_counter()
                s.run(None, {"x": x})
                times[kind].append((time.perf_counter() - started) / args.chain)
        med = {kind: float(np.median(t)) for kind, t in times.items()}
        for kind, t in med.items():
            print(f"M={m} {kind}: {t * 1e3:.3f} ms a weight, {2 * m * n * k / t / 1e9:.0f} GOPS, "
                  f"{weight_bytes[kind] / t / 1e9:.1f} GB/s of its "
                  f"{8 * weight_bytes[kind] / (n * k):.3f} bits a weight")
        print(f"M={m}: Q4MatMul / MatMulNBits speed = {med['MatMulNBits'] / med['Q4MatMul']:.2f}x")


if __name__ == "__main__":
    main()
