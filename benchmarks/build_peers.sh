#!/usr/bin/env bash
# Build the two peer runtimes that benchmarks/compare.py measures gemma-nb against:
#   * llama.cpp through llama-cpp-python, compiled from source;
#   * onnxruntime-genai (and its model builder).
#
# NOT part of CI: the llama.cpp build takes 6-25 minutes on 2 cores.
#
# Both go into their own virtual environment (default /tmp/peers-venv) so the project's
# python is left alone. The venv sees the project python's site-packages (torch 2.13.0+cpu,
# transformers, onnx, gguf, sentencepiece: the builder and gguf_to_hf need them, and a second
# torch would cost GBs of disk); what is installed here shadows them. Usage:
#
#     bash benchmarks/build_peers.sh [VENV]          # default VENV=/tmp/peers-venv
#
# Why the hand-written instruction sets: llama.cpp's default (GGML_NATIVE=ON) build detects
# AMX on these Sapphire Rapids VMs and its AMX kernel dies with SIGILL here.  So the build is
# non-native, lists AVX2/FMA/F16C/AVX512(+VBMI, VNNI, BF16)/AVX-VNNI by hand and keeps the
# three AMX options off.  Check `grep -o 'avx512[a-z_0-9]*\|amx[a-z_0-9]*' /proc/cpuinfo`
# before reusing these flags on another machine.
set -euo pipefail

VENV="${1:-/tmp/peers-venv}"
PYTHON="${PYTHON:-python3.11}"
LLAMA_CPP_PYTHON_VERSION="0.3.36"   # vendors a llama.cpp with gemma2 and gemma3
ORT_GENAI_VERSION="0.18.0"
TORCH_VERSION="2.13.0"              # the model builder imports torch; never unpinned

export CMAKE_ARGS="-DGGML_NATIVE=OFF \
 -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
 -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON \
 -DGGML_AVX_VNNI=ON \
 -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
 -DLLAVA_BUILD=OFF -DCMAKE_BUILD_TYPE=Release"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV"
fi
"$VENV/bin/python" -m pip install --upgrade pip wheel setuptools

echo "CMAKE_ARGS=$CMAKE_ARGS"
"$VENV/bin/python" -m pip install -v --no-cache-dir \
    "llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION}" --no-binary llama-cpp-python

# torch==2.13.0 is satisfied by the project's 2.13.0+cpu when present (no download).
"$VENV/bin/python" -m pip install \
    "onnxruntime-genai==${ORT_GENAI_VERSION}" onnx_ir \
    "torch==${TORCH_VERSION}" transformers safetensors sentencepiece onnx numpy

"$VENV/bin/python" - <<'EOF'
import llama_cpp, onnxruntime_genai as og, onnxruntime as ort
print("llama-cpp-python", llama_cpp.__version__)
print("llama.cpp system info:", llama_cpp.llama_print_system_info().decode())
print("onnxruntime-genai", og.__version__, "onnxruntime", ort.__version__)
EOF
