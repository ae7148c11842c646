// The GeGLU op (geglu.cc), registered beside Q4MatMul and Q4Gather in domain gemma_nb.
#pragma once

#include <cstdint>

#define ORT_API_MANUAL_INIT
#include "onnxruntime_lite_custom_op.h"
#undef ORT_API_MANUAL_INIT

namespace gemma_nb {

using GegluRow = void (*)(const float* gate, const float* up, int64_t n, float* out);

// One per graph node: its path (8-float vectors on AVX2, or the baseline) is fixed when the
// session is made, as the other ops' are.
struct GegluKernel {
  GegluKernel(const OrtApi*, const OrtKernelInfo*);
  void Compute(OrtKernelContext* context, const Ort::Custom::Tensor<float>& x, Ort::Custom::Tensor<float>& y);
  GegluRow row;
};

}  // namespace gemma_nb
