// RMSNorm's scale for one row: Attention's q/k norms (attention.cc) and Q4MatMul's norms after a
// block's o and down projections (q4_matmul.cc) normalize as onnxruntime's
// SimplifiedLayerNormalization does, in fp32.
#pragma once

#include <cmath>
#include <cstdint>

namespace gemma_nb {

// 1 / sqrt(mean(x^2) + epsilon) over n values, n a multiple of 8: 8 partial sums, which the
// compiler keeps in vectors (one running sum is a chain of n dependent adds).
inline float inverse_rms(const float* x, int64_t n, float epsilon) {
  float squares[8] = {};
  for (int64_t i = 0; i < n; i += 8) {
    for (int j = 0; j < 8; ++j) squares[j] += x[i + j] * x[i + j];
  }
  const float total = ((squares[0] + squares[1]) + (squares[2] + squares[3])) +
                      ((squares[4] + squares[5]) + (squares[6] + squares[7]));
  return 1.f / std::sqrt(total / static_cast<float>(n) + epsilon);
}

}  // namespace gemma_nb
