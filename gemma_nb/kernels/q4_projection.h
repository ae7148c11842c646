// Q4MatMul's product and its fused residual step, for ops made of several of them
// (decoder_layer.cc); q4_matmul.cc defines both.
#pragma once

#include <cstdint>
#include <memory>

#include "geglu.h"
#include "ort_values.h"

namespace gemma_nb {

class Q4Projection {
 public:
  // The weight is the node's constant inputs first .. first + 2 (tiles, scales, zeros); with
  // `geglu`, its tile rows alternate gate and up, as Q4MatMul's attribute geglu has them.
  Q4Projection(const OrtApi& api, const OrtKernelInfo* info, size_t first, bool geglu, const char* op);
  ~Q4Projection();
  int64_t outputs() const;  // N, or N / 2 with geglu
  // out [rows of a, outputs()] = a W^T, or gelu_tanh(gate) * up with geglu; a [..., K].
  void Multiply(OrtKernelContext* context, const float* a, const Dims& a_dims, float* out) const;

 private:
  struct Weight;
  std::unique_ptr<const Weight> weight_;
  int isa_;
  GegluRow geglu_;  // null: a plain product
};

// Q4MatMul's norms and residual add on rows [rows][n] of its product y, in place:
// sum = residual + rms_norm(y) * norm, then y = rms_norm(sum) * next_norm.
void add_residual(OrtKernelContext* context, float* y, float* sum, const float* residual, const float* norm,
                  const float* next_norm, int64_t n, int64_t rows, float epsilon);

}  // namespace gemma_nb
