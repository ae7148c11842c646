#!/usr/bin/env bash
# Builds the trial's custom-op library. onnxruntime's C API headers are in no PyPI wheel; Debian
# trixie's libonnxruntime-dev (1.21.0) has them. The C API is versioned and backward compatible,
# so a library built against API 21 loads into onnxruntime 1.31 / 1.32. Usage: build.sh OUT_DIR
set -euo pipefail
if ! grep -qw avx512_vnni /proc/cpuinfo; then
  echo "build.sh: the trial kernel needs AVX-512 VNNI, which this CPU lacks" >&2
  exit 1
fi
out=${1:-/tmp/q4-kernel-trial}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
if [ ! -f "$out/include/onnxruntime/onnxruntime_c_api.h" ]; then
  deb=pool/main/o/onnxruntime/libonnxruntime-dev_1.21.0+dfsg-1_amd64.deb
  curl -fsSL -o "$out/ort-dev.deb" "http://deb.debian.org/debian/$deb"
  dpkg-deb -x "$out/ort-dev.deb" "$out/deb"
  mkdir -p "$out/include"
  cp -r "$out/deb/usr/include/onnxruntime" "$out/include/"
fi
g++ -O3 -march=native -std=c++17 -fPIC -shared -I"$out/include/onnxruntime" \
  "$here/q4_matmul.cc" -o "$out/libq4trial.so"
echo "$out/libq4trial.so"
