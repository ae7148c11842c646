"""gemma-nb's Attention op (gemma_nb/kernels/attention.cc) against onnxruntime's own
GroupQueryAttention, the op it stands in for: same inputs, same attributes, a padded batch's
first prompt, a continued chunk and decode steps, with past and present sharing one buffer (as
gemma_nb.KVCache binds them) and without."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from gemma_nb.session import create_session

POSITIONS = 320  # rows of the rotary tables
SHORT, LONG = (7, 5), (300, 131)  # first prompts: each row's length (the second row padded)


def attention_model(domain: str, heads: int, kv_heads: int, packed: bool, cache=np.float32,
                    qk_norm: bool = False, **attrs):
    op = "Attention" if domain == "gemma_nb" else "GroupQueryAttention"
    inputs = ["query", "" if packed else "key", "" if packed else "value", "past_key", "past_value",
              "seqlens_k", "total_sequence_length", "cos_cache", "sin_cache"]
    inputs += ["q_norm", "k_norm"] if qk_norm else []
    node = helper.make_node(op, inputs, ["output", "present_key", "present_value"], domain=domain,
                            num_heads=heads, kv_num_heads=kv_heads, do_rotary=1,
                            rotary_interleaved=0, **attrs)
    f32, cached = TensorProto.FLOAT, helper.np_dtype_to_tensor_dtype(np.dtype(cache))
    graph_inputs = [helper.make_tensor_value_info(n, f32, None)
                    for n in ("query", "cos_cache", "sin_cache") + ("q_norm", "k_norm") * qk_norm]
    graph_inputs += [helper.make_tensor_value_info(n, cached, None)
                     for n in ("past_key", "past_value")]
    graph_inputs += [helper.make_tensor_value_info(n, TensorProto.INT32, None)
                     for n in ("seqlens_k", "total_sequence_length")]
    if not packed:
        graph_inputs += [helper.make_tensor_value_info(n, f32, None) for n in ("key", "value")]
    outputs = [helper.make_tensor_value_info("output", f32, None)]
    outputs += [helper.make_tensor_value_info(n, cached, None)
                for n in ("present_key", "present_value")]
    graph = helper.make_graph([node], "attention", graph_inputs, outputs)
    return helper.make_model(graph, ir_version=10, opset_imports=[
        helper.make_opsetid("", 21), helper.make_opsetid(domain, 1)])


def session(tmp_path, domain, **kwargs):
    path = tmp_path / f"{domain}.onnx"
    path.write_bytes(attention_model(domain, **kwargs).SerializeToString())
    return create_session(path, threads=2, kernel=domain == "gemma_nb")


def rope(head_size: int):
    angles = np.outer(np.arange(POSITIONS), 1.0 / 10000 ** (np.arange(0, head_size, 2) / head_size))
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def steps(rng, batch, width, prompt):
    """(new tokens, total length of each row after them): a first prompt (rows `prompt` long,
    the second padded), a chunk of 3 (one row: GroupQueryAttention takes no batch there), then
    three decode steps."""
    lengths = np.array(prompt[:batch])
    yield rng.standard_normal((batch, prompt[0], width)).astype(np.float32), lengths
    for new in ((3,) if batch == 1 else ()) + (1, 1, 1):
        lengths = lengths + new
        yield rng.standard_normal((batch, new, width)).astype(np.float32), lengths


def run_steps(sess, heads, kv_heads, head_size, packed, shared, batch, prompt=SHORT,
              cache_dtype=np.float32, adapt=lambda feeds: feeds):
    """Outputs of each step (rows' valid tokens only) and the final caches; `adapt` rewrites
    each step's feeds for the session."""
    rng = np.random.default_rng(head_size + heads)
    cos, sin = rope(head_size)
    q_width, kv_width = heads * head_size, kv_heads * head_size
    width = q_width + 2 * kv_width if packed else q_width
    capacity = prompt[0] + 8 if shared else 0
    cache = {n: np.zeros((batch, kv_heads, capacity, head_size), cache_dtype)
             for n in ("key", "value")}
    values = {n: ort.OrtValue.ortvalue_from_numpy(a) for n, a in cache.items()}
    outputs = []
    for new, lengths in steps(rng, batch, width, prompt):
        feeds = {"query": new, "seqlens_k": (lengths - 1).astype(np.int32),
                 "total_sequence_length": np.array(lengths.max(), np.int32),
                 "cos_cache": cos, "sin_cache": sin}
        if not packed:
            feeds["key"] = rng.standard_normal((batch, new.shape[1], kv_width)).astype(np.float32)
            feeds["value"] = rng.standard_normal((batch, new.shape[1], kv_width)).astype(np.float32)
        feeds = adapt(feeds)
        if shared:
            binding = sess.io_binding()
            binding.bind_output("output")  # first: copy_outputs_to_cpu() keeps the binding order
            for name, array in feeds.items():
                binding.bind_cpu_input(name, array)
            for n in ("key", "value"):
                binding.bind_ortvalue_input(f"past_{n}", values[n])
                binding.bind_ortvalue_output(f"present_{n}", values[n])
            sess.run_with_iobinding(binding)
            out = binding.copy_outputs_to_cpu()[0]
        else:
            out, cache["key"], cache["value"] = sess.run(
                None, {**feeds, "past_key": cache["key"], "past_value": cache["value"]})
        valid = new.shape[1] - (lengths.max() - lengths) if new.shape[1] == lengths.max() else \
            np.full(batch, new.shape[1])
        outputs.append([out[b, :valid[b]] for b in range(batch)])
    return outputs, {n: a.copy() for n, a in cache.items()}, lengths  # bound: written in place


# |ours - GroupQueryAttention's| / max |theirs|, by the type of our cache (theirs is float32): a
# float16 cache rounds every key and value to 11 significant bits.
TOLERANCE = {np.float32: 2e-5, np.float16: 2e-3}


def assert_matches(ours, theirs, cache):
    """Each step's outputs, and the caches: a float16 one holds GroupQueryAttention's float32
    keys and values rounded to nearest: within half a float16 step of them, beyond the float32
    cache's own tolerance (the two ops' rotations differ in their last bits)."""
    for step, (mine, ref) in enumerate(zip(ours[0], theirs[0])):
        for b, (x, y) in enumerate(zip(mine, ref)):
            np.testing.assert_allclose(x, y, atol=TOLERANCE[cache] * np.abs(y).max(), rtol=0,
                                       err_msg=f"step {step}, row {b}")
    for n in ("key", "value"):
        for b, length in enumerate(ours[2]):
            mine, ref = ours[1][n][b, :, :length], theirs[1][n][b, :, :length]
            if cache == np.float16:
                half_step = np.spacing(np.abs(ref).astype(np.float16)).astype(np.float32) / 2
                error = np.abs(mine.astype(np.float32) - ref) - (1e-6 + 1e-6 * np.abs(ref))
                assert np.all(error <= half_step), f"{n}: {(error / half_step).max()} half steps"
            else:
                np.testing.assert_allclose(mine, ref, atol=1e-6, rtol=1e-6, err_msg=n)


@pytest.mark.parametrize("heads,kv_heads,head_size", [(4, 1, 256), (8, 4, 16), (2, 2, 48)])
@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("attrs", [{}, {"softcap": 50.0}, {"local_window_size": 4}],
                         ids=["plain", "softcap", "window"])
@pytest.mark.parametrize("shared", [True, False], ids=["in-place", "copied"])
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("isa", ["avx512-vnni", "avx2", "generic"])
@pytest.mark.parametrize("cache", [np.float32, np.float16], ids=["fp32-cache", "fp16-cache"])
def test_attention_matches_group_query_attention(tmp_path, monkeypatch, heads, kv_heads,
                                                 head_size, packed, attrs, shared, batch, isa,
                                                 cache):
    """Each form the CPU has: AVX-512, AVX2 and the compiler's baseline (GEMMA_NB_KERNEL_ISA
    caps the choice), on a float32 or float16 cache."""
    monkeypatch.setenv("GEMMA_NB_KERNEL_ISA", isa)
    attrs = {"scale": head_size ** -0.5, "softcap": 0.0, "local_window_size": -1, **attrs}
    kw = dict(heads=heads, kv_heads=kv_heads, packed=packed, **attrs)
    ours = run_steps(session(tmp_path, "gemma_nb", cache=cache, **kw), heads, kv_heads,
                     head_size, packed, shared, batch, cache_dtype=cache)
    theirs = run_steps(session(tmp_path, "com.microsoft", **kw), heads, kv_heads, head_size,
                       packed, shared, batch)
    assert_matches(ours, theirs, cache)


@pytest.mark.parametrize("heads,kv_heads,head_size", [(4, 1, 256), (8, 4, 16), (6, 3, 32)])
@pytest.mark.parametrize("attrs", [{}, {"softcap": 50.0}, {"local_window_size": 200}],
                         ids=["plain", "softcap", "window"])
@pytest.mark.parametrize("isa", ["avx512-vnni", "avx2", "generic"])
@pytest.mark.parametrize("cache", [np.float32, np.float16], ids=["fp32-cache", "fp16-cache"])
def test_decode_over_many_key_chunks_matches_group_query_attention(tmp_path, monkeypatch, heads,
                                                                   kv_heads, head_size, attrs,
                                                                   isa, cache):
    """A decode step splits each row's keys into chunks of 128 and merges them: rows 301-303 and
    132-134 long (3 chunks, the shorter row's last one empty), a window starting mid-chunk."""
    monkeypatch.setenv("GEMMA_NB_KERNEL_ISA", isa)
    attrs = {"scale": head_size ** -0.5, "softcap": 0.0, "local_window_size": -1, **attrs}
    kw = dict(heads=heads, kv_heads=kv_heads, packed=True, **attrs)
    ours = run_steps(session(tmp_path, "gemma_nb", cache=cache, **kw), heads, kv_heads,
                     head_size, True, True, 2, LONG, cache)
    theirs = run_steps(session(tmp_path, "com.microsoft", **kw), heads, kv_heads, head_size,
                       True, True, 2, LONG)
    assert_matches(ours, theirs, cache)


def rms_normed_heads(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """Each head (the last axis in head-size pieces) x / sqrt(mean(x^2) + eps) * weight."""
    heads = x.reshape(*x.shape[:-1], -1, weight.size).astype(np.float64)
    normed = heads / np.sqrt((heads ** 2).mean(-1, keepdims=True) + eps) * weight
    return normed.reshape(x.shape).astype(np.float32)


@pytest.mark.parametrize("heads,kv_heads,head_size", [(4, 1, 256), (8, 4, 16)])
@pytest.mark.parametrize("isa", ["avx512-vnni", "generic"])
@pytest.mark.parametrize("cache", [np.float32, np.float16], ids=["fp32-cache", "fp16-cache"])
def test_qk_norms_match_group_query_attention_on_normalized_heads(tmp_path, monkeypatch, heads,
                                                                  kv_heads, head_size, isa,
                                                                  cache):
    """With q_norm and k_norm (Gemma 3), the op RMS-normalizes each query and key head before
    rotating it: GroupQueryAttention given those heads normalized in numpy, on a padded batch's
    prompt, a chunk and decode steps."""
    monkeypatch.setenv("GEMMA_NB_KERNEL_ISA", isa)
    eps = 1e-6
    rng = np.random.default_rng(7)
    q_norm, k_norm = (rng.uniform(0.5, 2.0, head_size).astype(np.float32) for _ in range(2))
    q_size, kv_size = heads * head_size, kv_heads * head_size
    attrs = {"scale": head_size ** -0.5, "softcap": 50.0, "local_window_size": -1}
    kw = dict(heads=heads, kv_heads=kv_heads, **attrs)

    def with_norms(feeds):
        return {**feeds, "q_norm": q_norm, "k_norm": k_norm}

    def normalized(feeds):  # packed q|k|v -> GroupQueryAttention's q, k, v, q and k normalized
        q, k, v = np.split(feeds.pop("query"), [q_size, q_size + kv_size], axis=-1)
        return {**feeds, "query": rms_normed_heads(q, q_norm, eps),
                "key": rms_normed_heads(k, k_norm, eps), "value": np.ascontiguousarray(v)}

    ours_sess = session(tmp_path, "gemma_nb", cache=cache, packed=True, qk_norm=True,
                        qk_norm_epsilon=eps, **kw)
    theirs_sess = session(tmp_path, "com.microsoft", packed=False, **kw)
    ours = run_steps(ours_sess, heads, kv_heads, head_size, True, True, 2, cache_dtype=cache,
                     adapt=with_norms)
    theirs = run_steps(theirs_sess, heads, kv_heads, head_size, True, True, 2,
                       adapt=normalized)
    assert_matches(ours, theirs, cache)
    plain = run_steps(session(tmp_path, "gemma_nb", cache=cache, packed=True, **kw), heads,
                      kv_heads, head_size, True, True, 2, cache_dtype=cache)
    assert not np.allclose(plain[0][0][0], ours[0][0][0], atol=1e-2)  # the norms change it


@pytest.mark.parametrize("given,message", [
    ({"q_norm": 16, "k_norm": 16}, "need the attribute qk_norm_epsilon"),
    ({"q_norm": 16, "k_norm": 8, "qk_norm_epsilon": 1e-6}, "head size's values"),
])
def test_bad_qk_norms_fail_the_run_with_a_reason(tmp_path, given, message):
    sizes = {k: v for k, v in given.items() if k != "qk_norm_epsilon"}
    attrs = {k: v for k, v in given.items() if k == "qk_norm_epsilon"}
    sess = session(tmp_path, "gemma_nb", heads=2, kv_heads=1, packed=True, qk_norm=True,
                   scale=0.25, softcap=0.0, local_window_size=-1, **attrs)
    cos, sin = rope(16)
    feeds = {"query": np.ones((1, 1, 64), np.float32), "seqlens_k": np.array([0], np.int32),
             "total_sequence_length": np.array(1, np.int32), "cos_cache": cos, "sin_cache": sin,
             "past_key": np.zeros((1, 1, 8, 16), np.float32),
             "past_value": np.zeros((1, 1, 8, 16), np.float32),
             **{name: np.ones(n, np.float32) for name, n in sizes.items()}}
    with pytest.raises(Exception, match=message):
        sess.run(None, feeds)


def test_a_row_that_does_not_fit_the_cache_fails_the_run_not_the_process(tmp_path):
    sess = session(tmp_path, "gemma_nb", heads=2, kv_heads=1, packed=True, scale=0.25,
                   softcap=0.0, local_window_size=-1)
    cos, sin = rope(16)  # POSITIONS rows: position 400 is past them
    feeds = {"query": np.zeros((1, 1, 64), np.float32), "seqlens_k": np.array([400], np.int32),
             "total_sequence_length": np.array(401, np.int32), "cos_cache": cos,
             "sin_cache": sin, "past_key": np.zeros((1, 1, 8, 16), np.float32),
             "past_value": np.zeros((1, 1, 8, 16), np.float32)}
    with pytest.raises(Exception, match="seqlens_k"):
        sess.run(None, feeds)
