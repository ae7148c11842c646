// Passes over a row of logits for each generated token (gemma_nb/logit_stats.py):
// - its log-sum-exp and argmax: the token's log-probability and the greedy pick. numpy makes them
//   in five passes over the vocabulary, 1 MB each for Gemma 3's 262k logits, ~210 us of a 270M
//   decode step (5%) on logits the weight stream has left cold. This makes both in one pass, in
//   4 KB chunks read twice from L1: their maximum, then their exponentials.
// - the weights exp((x - max) / T) of a draw at temperature T, with their blocks' sums: numpy's
//   exp alone runs ~1.3 cycles a value, its subtraction, division and sums are passes of their own.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "attention.h"  // session_vector_width
#include "exp16.h"

namespace {

#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx512f,fma")
constexpr int64_t kChunk = 1024;  // 4 KB: its max first, then its exponentials, both from L1

// The next chunk's line asked for as each line is read: the lm_head's two cores wrote the row,
// half of it sits in the other core's L2. In generation, a row's stats 125 -> 94 us (1 to 8 KB
// ahead alike).
inline void ask_ahead(const float* at) { _mm_prefetch(reinterpret_cast<const char*>(at + kChunk), _MM_HINT_T0); }

// part's 16 floats added into two sums of 8 doubles.
inline void add_wide(__m512 part, __m512d& low, __m512d& high) {
  low = _mm512_add_pd(low, _mm512_cvtps_pd(_mm512_castps512_ps256(part)));
  const __m256 upper = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(part), 1));
  high = _mm512_add_pd(high, _mm512_cvtps_pd(upper));
}

// Each lane keeps its largest value and where it first saw it (a strict >: numpy's first index
// among equals), and a sum of exp(x - m), m the largest value so far: a chunk's in float lanes,
// the row's in double (its log-sum-exp then within ~1e-7 of float64 numpy's, not ~1e-5).
void stats_avx512(const float* row, int64_t n, double* logsumexp, int64_t* best) {
  const __m512 minus_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 top = minus_inf;
  __m512d sum_low = _mm512_setzero_pd(), sum_high = _mm512_setzero_pd();
  __m512i where = _mm512_setzero_si512();
  const __m512i step = _mm512_set1_epi32(16);
  __m512i index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t c = 0; c < n; c += kChunk) {
    const int64_t end = std::min(n, c + kChunk);
    for (int64_t j = c; j < end; j += 16) {
      const __mmask16 lanes = gemma_nb::lanes16(end - j);
      ask_ahead(row + j);
      const __m512 x = _mm512_mask_loadu_ps(minus_inf, lanes, row + j);
      const __mmask16 higher = _mm512_cmp_ps_mask(x, top, _CMP_GT_OQ);
      top = _mm512_mask_mov_ps(top, higher, x);
      where = _mm512_mask_mov_epi32(where, higher, index);
      index = _mm512_add_epi32(index, step);
    }
    const float chunk_top = _mm512_reduce_max_ps(top);
    if (chunk_top > m) {  // rescale what is summed to the new maximum
      const __m512d scale = _mm512_set1_pd(std::exp(static_cast<double>(m) - chunk_top));
      sum_low = _mm512_mul_pd(sum_low, scale), sum_high = _mm512_mul_pd(sum_high, scale);
      m = chunk_top;
    }
    const __m512 shift = _mm512_set1_ps(m);
    __m512 part = _mm512_setzero_ps();
    for (int64_t j = c; j < end; j += 16) {
      const __mmask16 lanes = gemma_nb::lanes16(end - j);
      const __m512 x = _mm512_maskz_loadu_ps(lanes, row + j);
      part = _mm512_mask_add_ps(part, lanes, part, gemma_nb::exp16(_mm512_sub_ps(x, shift)));
    }
    add_wide(part, sum_low, sum_high);
  }
  const __mmask16 at_top = _mm512_cmp_ps_mask(top, _mm512_set1_ps(m), _CMP_EQ_OQ);
  *best = _mm512_mask_reduce_min_epi32(at_top, where);
  *logsumexp = m + std::log(_mm512_reduce_add_pd(_mm512_add_pd(sum_low, sum_high)));
}

// weights = exp((row - max(row)) * scale), and sums[b] the sum of weights [b block, (b + 1) block),
// added up in float lanes (a draw's odds off by ~1e-7 of a block's, against numpy's double sums).
void weights_avx512(const float* row, int64_t n, float scale, int64_t block, float* weights, double* sums) {
  __m512 top = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 lanes = gemma_nb::lanes16(n - j);
    ask_ahead(row + j);
    top = _mm512_max_ps(top, _mm512_mask_loadu_ps(top, lanes, row + j));
  }
  const __m512 shift = _mm512_set1_ps(_mm512_reduce_max_ps(top)), times = _mm512_set1_ps(scale);
  for (int64_t b = 0, c = 0; c < n; ++b, c += block) {
    const int64_t end = std::min(n, c + block);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = c; j < end; j += 16) {
      const __mmask16 lanes = gemma_nb::lanes16(end - j);
      const __m512 x = _mm512_maskz_loadu_ps(lanes, row + j);
      const __m512 w = gemma_nb::exp16(_mm512_mul_ps(_mm512_sub_ps(x, shift), times));
      _mm512_mask_storeu_ps(weights + j, lanes, w);
      sum = _mm512_mask_add_ps(sum, lanes, sum, w);
    }
    sums[b] = _mm512_reduce_add_ps(sum);
  }
}
#pragma GCC pop_options
#endif

}  // namespace

// The log-sum-exp and argmax of a row of `n` logits; 0, and nothing written, where this CPU (or
// GEMMA_NB_KERNEL_ISA) has no AVX-512: numpy's passes are then as fast.
extern "C" int GemmaNbLogitStats(const float* logits, int64_t n, double* logsumexp, int64_t* best) {
#if defined(__x86_64__)
  if (gemma_nb::session_vector_width() >= 16) {
    stats_avx512(logits, n, logsumexp, best);
    return 1;
  }
#endif
  return 0;
}

// weights [n] = exp((logits - max) * scale), sums [ceil(n / block)] the sums of its blocks; 0, and
// nothing written, without AVX-512, as above.
extern "C" int GemmaNbTemperatureWeights(const float* logits, int64_t n, float scale, int64_t block, float* weights,
                                         double* sums) {
#if defined(__x86_64__)
  if (gemma_nb::session_vector_width() >= 16) {
    weights_avx512(logits, n, scale, block, weights, sums);
    return 1;
  }
#endif
  return 0;
}
