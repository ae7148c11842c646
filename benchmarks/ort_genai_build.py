"""Run onnxruntime-genai's model builder, with one fix for Gemma-3 under transformers 5.

    /tmp/peers-venv/bin/python benchmarks/ort_genai_build.py -i HF_FOLDER -o OUT -p int4 -e cpu

Takes the same arguments as `python -m onnxruntime_genai.models.builder`. Not part of CI.

Why a wrapper: onnxruntime-genai 0.18's builder imports classes that exist only in
transformers 5 (Qwen3.5), but its Gemma-3 code still reads the transformers 4 config
attributes. transformers 5 folds `rope_theta` / `rope_local_base_freq` into a per-layer-type
`rope_parameters` dict, so the builder fails (`no attribute 'rope_local_base_freq'`, then
`KeyError: 'rope_type'`), or would silently use RoPE base 10000 on the global layers. See
microsoft/onnxruntime-genai PR #2078. We give the builder's own config object the
transformers 4 attributes back; the weights, graph and quantization are the builder's own.
Gemma-2 configs pass through untouched.
"""

from __future__ import annotations

from onnxruntime_genai.models import builder


def _transformers4_rope(config) -> None:
    """Gemma-3 (text): per-type rope_parameters -> rope_theta, rope_local_base_freq, flat dict."""
    params = getattr(config, "rope_parameters", None)
    if not (isinstance(params, dict) and "full_attention" in params):
        return
    full, local = params["full_attention"], params["sliding_attention"]
    config.rope_theta = full["rope_theta"]
    config.rope_local_base_freq = local["rope_theta"]
    config.rope_parameters = dict(full)  # the global layers' RoPE, as transformers 4 had it


_get_hf_details = builder.get_hf_details


def get_hf_details(*args, **kwargs):
    details = _get_hf_details(*args, **kwargs)
    _transformers4_rope(details["hf_config"])
    return details


def main() -> None:
    builder.get_hf_details = get_hf_details
    args = builder.get_args()
    extra_options = builder.parse_extra_options(
        args.model_name, args.input, args.output, args.precision, args.execution_provider,
        args.cache_dir, args.extra_options,
        builder_config_version=args.builder_config_version, target_options=args.target_options,
        drafter_options=args.drafter_options, speculative_options=args.speculative_options,
        runtime_config=args.runtime_config, search=args.search,
    )
    builder.create_model(args.model_name, args.input, args.output, args.precision,
                         args.execution_provider, args.cache_dir, **extra_options)


if __name__ == "__main__":
    main()
