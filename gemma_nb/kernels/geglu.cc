// gemma-nb's GeGLU op for `--dtype int4-cpu` folders: GeGLU, domain gemma_nb.
//
// The Gemma MLP's gelu_tanh(gate) * up, from the output of the fused gate|up projection, in one
// pass. The standard form, Split (a copy), Gelu and Mul, goes over that output three times: on
// the 2B shape, 18 MB a layer in a 256-token run, and 6% of its prefill in onnxruntime's profiler.
// Folders exported since Q4MatMul's attribute geglu run none: that op makes the GeGLU itself with
// session_geglu_row's arithmetic, without writing the product out; older folders run this op.
//
// GeGLU(x float [..., 2F]) -> [..., F]: x's last axis holds gate (F values), then up (F values).
#include "geglu.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "attention.h"  // session_vector_width
#include "exp16.h"

namespace gemma_nb {
namespace {

constexpr float kMinusTwoSqrtTwoOverPi = -1.5957691216057308f, kCubic = 0.044715f;  // geglu_math.inc

namespace portable {
#include "geglu_math.inc"
}  // namespace portable

#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#include "geglu_math.inc"
}  // namespace avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,fma")
namespace avx512 {
// geglu_math.inc's arithmetic on 16 lanes, the tail masked: 1.66x the 8-lane form's speed on
// 256 x 9216 outputs (2 threads), where Q4MatMul makes the GeGLU on products still in cache.
void geglu_row(const float* gate, const float* up, int64_t n, float* out) {
  const __m512 minus_two_c = _mm512_set1_ps(kMinusTwoSqrtTwoOverPi), cubic = _mm512_set1_ps(kCubic);
  const __m512 one = _mm512_set1_ps(1.f);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 lanes = lanes16(n - j);
    const __m512 g = _mm512_maskz_loadu_ps(lanes, gate + j);
    const __m512 u = _mm512_fmadd_ps(_mm512_mul_ps(cubic, g), _mm512_mul_ps(g, g), g);
    const __m512 e = exp16(_mm512_mul_ps(minus_two_c, u));
    const __m512 y = _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), _mm512_maskz_loadu_ps(lanes, up + j));
    _mm512_mask_storeu_ps(out + j, lanes, y);
  }
}
}  // namespace avx512
#pragma GCC pop_options
#endif

struct GegluJob {
  GegluRow row;
  const float* x;
  float* y;
  int64_t f, total, per_task;  // outputs: a row's, all, a task's
};

void geglu_task(void* data, size_t task) {  // outputs per_task * task on, across rows
  const auto& job = *static_cast<const GegluJob*>(data);
  const int64_t end = std::min(job.total, (static_cast<int64_t>(task) + 1) * job.per_task);
  for (int64_t i = static_cast<int64_t>(task) * job.per_task; i < end;) {
    const int64_t row = i / job.f, column = i % job.f, n = std::min(end - i, job.f - column);
    const float* gate = job.x + row * 2 * job.f + column;
    job.row(gate, gate + job.f, n, job.y + i);
    i += n;
  }
}

}  // namespace

GegluRow session_geglu_row() {
#if defined(__x86_64__)
  if (session_vector_width() >= 16) return avx512::geglu_row;
  if (session_vector_width() >= 8) return avx2::geglu_row;
#endif
  return portable::geglu_row;
}

GegluKernel::GegluKernel(const OrtApi*, const OrtKernelInfo*) : row(session_geglu_row()) {}

void GegluKernel::Compute(OrtKernelContext* context, const Ort::Custom::Tensor<float>& x,
                          Ort::Custom::Tensor<float>& y) {
  std::vector<int64_t> shape = x.Shape();
  if (shape.empty() || shape.back() % 2 != 0) {
    ORT_CXX_API_THROW("GeGLU: the input's last axis is not gate and up of one size", ORT_INVALID_ARGUMENT);
  }
  shape.back() /= 2;
  float* out = y.Allocate(shape);
  Ort::KernelContext ctx(context);
  geglu_on_pool(ctx, row, x.Data(), shape.back(), x.NumberOfElement() / 2, out);
}

void geglu_on_pool(Ort::KernelContext& ctx, GegluRow row, const float* x, int64_t f, int64_t total, float* y) {
  if (total == 0) return;
  constexpr int64_t kPerTask = 16384;  // outputs: 192 KB read and written a task
  GegluJob job{row, x, y, f, total, kPerTask};
  ctx.ParallelFor(geglu_task, static_cast<size_t>((total + kPerTask - 1) / kPerTask), 0, &job);
}

}  // namespace gemma_nb
