// The GeGLU op (geglu.cc), registered beside Q4MatMul and Q4Gather in domain gemma_nb.
#pragma once

#include <cstdint>

#define ORT_API_MANUAL_INIT
#include "onnxruntime_lite_custom_op.h"
#undef ORT_API_MANUAL_INIT

namespace gemma_nb {

using GegluRow = void (*)(const float* gate, const float* up, int64_t n, float* out);

// The row function for a session made now (16 lanes on AVX-512, 8 on AVX2, or the baseline):
// GeGLU's, and Q4MatMul's where it makes the gate|up projection's GeGLU itself (attribute geglu).
GegluRow session_geglu_row();

// y [..., f] = GeGLU of x [..., 2f] (each row gate, then up), `total` outputs, with `row` on the
// session's pool: the op's work, and Q4MatMul's after an AMX product.
void geglu_on_pool(Ort::KernelContext& ctx, GegluRow row, const float* x, int64_t f, int64_t total, float* y);

// One per graph node: its path is fixed when the session is made, as the other ops' are.
struct GegluKernel {
  GegluKernel(const OrtApi*, const OrtKernelInfo*);
  void Compute(OrtKernelContext* context, const Ort::Custom::Tensor<float>& x, Ort::Custom::Tensor<float>& y);
  GegluRow row;
};

}  // namespace gemma_nb
