// gemma-nb's attention op for `--dtype int4-cpu` folders: Attention, domain gemma_nb.
//
// The inputs, outputs and attributes of onnxruntime's com.microsoft GroupQueryAttention as
// gemma-nb's exporter uses it (rotary on, not interleaved; q, k and v packed in the first input
// or given apart; past and present sharing one buffer through IOBinding), so the exporter swaps
// one for the other. onnxruntime's CPU kernel multiplies every query row with the whole key
// rectangle, masked half included, and calls tanhf for every score under a soft cap; at 512
// tokens of context one decode step of Gemma 3 270M spent ~45 us a layer in it. This op takes
// each query row with only the keys it may see (causal, sliding window), in fp32 arithmetic.
// The cache (past and present) is float32 or float16: int4-cpu graphs keep it in float16, half
// the bytes a decode step reads from it; keys and values are rounded to nearest as they are stored.
//
// Attention(query, key?, value?, past_key, past_value, seqlens_k int32 [B], total_sequence_length
//           int32 [], cos_cache [P, D/2], sin_cache [P, D/2], q_norm? [D], k_norm? [D])
//           -> output, present_key, present_value
//
// As GroupQueryAttention does:
// - a run whose S new tokens make up the whole total_sequence_length is a first prompt: every
//   row starts at position 0 (rows shorter than S are padding at the end, seqlens_k[b] + 1 long);
//   any other run continues each row after its seqlens_k[b] + 1 - S cached tokens;
// - the S new keys and values go to those positions of present (all S, padding too);
// - a query at position p sees keys p - local_window_size + 1 .. p (from 0), or all up to p with
//   local_window_size -1;
// - scores are scale * q.k, then softcap * tanh(score / softcap) where softcap > 0.
// Beyond it: with q_norm and k_norm (attribute qk_norm_epsilon), each head of q and k is first
// RMS-normalized, x / sqrt(mean(x^2) + epsilon) * norm, before its rotation: Gemma 3's q/k norm,
// which otherwise takes a layer 7 onnxruntime nodes around the op (Split, 4 Reshapes and 2
// SimplifiedLayerNormalizations; 1.03-1.07x the Gemma 3 270M's decode without them).
#include "attention.h"
#include "exp16.h"
#include "rms_norm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace gemma_nb {
namespace {

// What exponentiate leaves of one row of scores: they become exp(score - max), summing to sum; the
// softmax is then the weighted sum divided by sum.
struct Exponentials {
  float max, sum;
};

using Half = uint16_t;  // an element of a float16 cache, as its bits

// x as float16, rounded to nearest even (as F16C and numpy round).
inline Half float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  const uint32_t sign = (x >> 16) & 0x8000u;
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) return static_cast<Half>(sign | 0x7c00u | (x > 0x7f800000u ? 0x200u : 0u));  // inf, nan
  if (x >= 0x477ff000u) return static_cast<Half>(sign | 0x7c00u);  // rounds past 65504
  if (x < 0x38800000u) {  // under 2^-14: a subnormal half, in units of 2^-24
    float magnitude;
    std::memcpy(&magnitude, &x, sizeof magnitude);
    return static_cast<Half>(sign | static_cast<uint32_t>(std::nearbyint(magnitude * 0x1p24f)));
  }
  return static_cast<Half>(sign | ((x + 0xfffu + ((x >> 13) & 1u) - 0x38000000u) >> 13));
}

// Asks for every cache line of [first, first + bytes) (prefetcht0 on x86-64).
inline void prefetch(const void* first, int64_t bytes) {
  const char* p = static_cast<const char*>(first);
  for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(p + o);
}

// The arithmetic on query rows: the scores of n keys, the soft cap, the exponentials (one row),
// the weighted sum of values. Scores and sums take `queries` rows at once (q and out [queries][d],
// p and scores [queries][n]), so that each key and value row is read once for all of them; keys
// and values are C, the cache's type (float or Half), and `store` writes a new row into it. Three
// forms, by what the session may use (session_vector_width): AVX-512 intrinsics below, and
// attention_math.inc's 8-float vectors on AVX2 or the baseline.
template <typename C>
struct RowMath {
  void (*scores)(const float* q, int64_t queries, const C* keys, int64_t n, int64_t d, float* out);
  void (*softcap)(float* scores, int64_t n, float cap);
  Exponentials (*exponentiate)(float* scores, int64_t n);
  void (*weighted_sum)(const float* p, int64_t queries, const C* values, int64_t n, int64_t d, float* out);
  void (*store)(const float* x, int64_t n, C* out);
};

namespace portable {
typedef int32_t vi __attribute__((vector_size(32)));
typedef float vf __attribute__((vector_size(32)));

inline vf load(const Half* p) {  // exact: one multiply rebiases normals and subnormals alike
  vi h;
  for (int i = 0; i < 8; ++i) h[i] = p[i];
  const vi magnitude = (h & 0x7fff) << 13;
  vf f;
  std::memcpy(&f, &magnitude, sizeof f);
  f *= 0x1p112f;
  vi bits;
  std::memcpy(&bits, &f, sizeof bits);
  bits = ((h & 0x7c00) == 0x7c00 ? magnitude | 0x7f800000 : bits) | (h & 0x8000) << 16;  // inf, nan; sign
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline void store_halves(const float* x, int64_t n, Half* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = float_to_half(x[i]);
}

#include "attention_math.inc"
}  // namespace portable

#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
namespace avx2 {
typedef float vf __attribute__((vector_size(32)));

inline vf load(const Half* p) {
  const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  vf f;
  std::memcpy(&f, &v, sizeof f);
  return f;
}

inline void store_halves(const float* x, int64_t n, Half* out) {  // n: a multiple of 8
  for (int64_t i = 0; i < n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  }
}

#include "attention_math.inc"
}  // namespace avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,fma,f16c")

inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const Half* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }

void softcap_avx512(float* scores, int64_t n, float cap) {  // cap * tanh(s / cap), tanh(u) = 1 - 2 / (e^2u + 1)
  const __m512 two_over_cap = _mm512_set1_ps(2.f / cap), vcap = _mm512_set1_ps(cap), one = _mm512_set1_ps(1.f);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 lanes = lanes16(n - j);
    const __m512 s = _mm512_maskz_loadu_ps(lanes, scores + j);
    const __m512 e = exp16(_mm512_mul_ps(s, two_over_cap));
    const __m512 tanh = _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.f), _mm512_add_ps(e, one)));
    _mm512_mask_storeu_ps(scores + j, lanes, _mm512_mul_ps(vcap, tanh));
  }
}

Exponentials exponentiate_avx512(float* scores, int64_t n) {
  __m512 top = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 lanes = lanes16(n - j);
    top = _mm512_mask_max_ps(top, lanes, top, _mm512_maskz_loadu_ps(lanes, scores + j));
  }
  const float highest = _mm512_reduce_max_ps(top);
  const __m512 max = _mm512_set1_ps(highest);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 lanes = lanes16(n - j);
    const __m512 e = _mm512_maskz_mov_ps(lanes, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, scores + j), max)));
    sum = _mm512_add_ps(sum, e);
    _mm512_mask_storeu_ps(scores + j, lanes, e);
  }
  return {highest, _mm512_reduce_add_ps(sum)};
}

// The AVX-512 loops ask for cache rows (prefetcht0) this many rows before they read them. A decode
// step streams each task's keys, then its values, from DRAM: in a harness of the 2B shape's 26
// layers at 2,048 tokens, one core read the float16 cache at 15-17 GB/s without and 19-22 with
// it (32 or 64 rows: 17-20), two cores at 29-30 and 31-33.
constexpr int64_t kPrefetchRows = 16;

// The sums of 16 vectors' lanes, v[i]'s in lane i: a tree of shuffles and adds, 45 instructions
// where 16 reductions of one vector each take ~130.
inline __m512 lane_sums(const __m512* v) {
  __m512 pairs[8], quads[4];
  for (int i = 0; i < 8; ++i) {  // each 128-bit lane: v[2i]'s and v[2i+1]'s sums of 2, interleaved
    pairs[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  }
  for (int i = 0; i < 4; ++i) {  // each 128-bit lane: the sums of 4 of v[4i] .. v[4i + 3], in order
    const __m512d a = _mm512_castps_pd(pairs[2 * i]), b = _mm512_castps_pd(pairs[2 * i + 1]);
    quads[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
  }
  // then 128-bit lanes: v[4i..4i+3]'s totals gather in lane group i
  const __m512 low = _mm512_add_ps(_mm512_shuffle_f32x4(quads[0], quads[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_f32x4(quads[0], quads[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512 high = _mm512_add_ps(_mm512_shuffle_f32x4(quads[2], quads[3], _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_f32x4(quads[2], quads[3], _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm512_add_ps(_mm512_shuffle_f32x4(low, high, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(low, high, _MM_SHUFFLE(3, 1, 3, 1)));
}

// QR queries x KR keys of dot products, from query qi and key j.
template <int QR, int KR, typename C>
void dots(const float* q, const C* keys, int64_t n, int64_t d, float* out, int64_t qi, int64_t j) {
  __m512 acc[QR][KR];
  for (auto& row : acc) {
    for (auto& a : row) a = _mm512_setzero_ps();
  }
  for (int64_t i = 0; i < d; i += 16) {
    __m512 k[KR];
    for (int kr = 0; kr < KR; ++kr) k[kr] = load16(keys + (j + kr) * d + i);
    for (int qr = 0; qr < QR; ++qr) {
      const __m512 x = _mm512_loadu_ps(q + (qi + qr) * d + i);
      for (int kr = 0; kr < KR; ++kr) acc[qr][kr] = _mm512_fmadd_ps(x, k[kr], acc[qr][kr]);
    }
  }
  if constexpr (QR * KR == 16) {  // all 16 sums in one vector, lane qr * KR + kr
    float sums[16];
    _mm512_storeu_ps(sums, lane_sums(&acc[0][0]));
    for (int qr = 0; qr < QR; ++qr) std::memcpy(out + (qi + qr) * n + j, sums + qr * KR, KR * sizeof(float));
  } else {
    for (int qr = 0; qr < QR; ++qr) {
      for (int kr = 0; kr < KR; ++kr) out[(qi + qr) * n + j + kr] = _mm512_reduce_add_ps(acc[qr][kr]);
    }
  }
}

// QR queries from qi with every key, KR keys at a time.
template <int QR, int KR, typename C>
void query_rows(const float* q, const C* keys, int64_t n, int64_t d, float* out, int64_t qi) {
  int64_t j = 0;
  for (; j + KR <= n; j += KR) {
    const int64_t ahead = std::min<int64_t>(KR, n - j - kPrefetchRows);  // rows: keys are contiguous
    if (ahead > 0) prefetch(keys + (j + kPrefetchRows) * d, ahead * d * static_cast<int64_t>(sizeof(C)));
    dots<QR, KR>(q, keys, n, d, out, qi, j);
  }
  for (; j < n; ++j) dots<QR, 1>(q, keys, n, d, out, qi, j);
}

template <typename C>
void block_scores_avx512(const float* q, int64_t queries, const C* keys, int64_t n, int64_t d, float* out) {
  int64_t qi = 0;
  for (; qi + 4 <= queries; qi += 4) query_rows<4, 4>(q, keys, n, d, out, qi);
  for (; qi + 2 <= queries; qi += 2) query_rows<2, 8>(q, keys, n, d, out, qi);
  for (; qi < queries; ++qi) query_rows<1, 8>(q, keys, n, d, out, qi);  // 8 keys: 8 chains in flight
}

// QR queries x C vectors of 16 outputs, from query qi and output column i.
template <int QR, int C, typename T>
void weighted(const float* p, const T* values, int64_t n, int64_t d, float* out, int64_t qi, int64_t i) {
  __m512 acc[QR][C];
  for (auto& row : acc) {
    for (auto& a : row) a = _mm512_setzero_ps();
  }
  for (int64_t j = 0; j < n; ++j) {
    if (j + kPrefetchRows < n) prefetch(values + (j + kPrefetchRows) * d + i, 16 * C * sizeof(T));
    __m512 v[C];
    for (int c = 0; c < C; ++c) v[c] = load16(values + j * d + i + 16 * c);
    for (int qr = 0; qr < QR; ++qr) {
      const __m512 w = _mm512_set1_ps(p[(qi + qr) * n + j]);
      for (int c = 0; c < C; ++c) acc[qr][c] = _mm512_fmadd_ps(w, v[c], acc[qr][c]);
    }
  }
  for (int qr = 0; qr < QR; ++qr) {
    for (int c = 0; c < C; ++c) _mm512_storeu_ps(out + (qi + qr) * d + i + 16 * c, acc[qr][c]);
  }
}

// QR queries from qi, every output column, C vectors of 16 at a time (QR x C accumulators).
template <int QR, int C, typename T>
void output_rows(const float* p, const T* values, int64_t n, int64_t d, float* out, int64_t qi) {
  int64_t i = 0;
  for (; i + 16 * C <= d; i += 16 * C) weighted<QR, C>(p, values, n, d, out, qi, i);
  for (; i < d; i += 16) weighted<QR, 1>(p, values, n, d, out, qi, i);
}

template <typename C>
void block_weighted_sum_avx512(const float* p, int64_t queries, const C* values, int64_t n, int64_t d, float* out) {
  int64_t qi = 0;
  for (; qi + 8 <= queries; qi += 8) output_rows<8, 2>(p, values, n, d, out, qi);
  for (; qi + 4 <= queries; qi += 4) output_rows<4, 4>(p, values, n, d, out, qi);
  for (; qi + 2 <= queries; qi += 2) output_rows<2, 8>(p, values, n, d, out, qi);
  for (; qi < queries; ++qi) output_rows<1, 8>(p, values, n, d, out, qi);
}

#pragma GCC pop_options
#endif

template <typename C>
RowMath<C> row_math(int64_t head_size, int width) {
#if defined(__x86_64__)
  if (width >= 16 && head_size % 16 == 0) {
    return {block_scores_avx512<C>, softcap_avx512, exponentiate_avx512, block_weighted_sum_avx512<C>, avx2::store_row};
  }
  if (width >= 8) return avx2::kMath<C>;
#endif
  return portable::kMath<C>;
}

// Prompt rows a task takes, with all the query heads of one cache head (attend_block).
constexpr int64_t kBlockRows = 4;
// A decode step splits each row's keys into chunks this long (flash-decoding): a task takes one
// chunk with all the query heads of one cache head, so every key and value is read once a step,
// and both cores share the work where the model has one cache head (Gemma 3 270M).
constexpr int64_t kKeyChunk = 128;

[[noreturn]] void fail(const std::string& why) { ORT_CXX_API_THROW("Attention: " + why, ORT_INVALID_ARGUMENT); }

struct Shapes {
  int64_t batch, seq, heads, kv_heads, head_size, capacity, present_len, rotary_rows;
  bool packed;
};

template <typename C>  // the cache's type: float or Half
struct Job {
  const Shapes* s;
  const RowMath<C>* math;
  const float *q, *k, *v, *cos, *sin;  // q/k/v: [B, S, width] rows, `*_width` floats apart
  int64_t q_width, kv_width, k_offset, v_offset;
  const int32_t* seqlens;
  bool first_prompt;
  float scale, softcap;
  int64_t window;
  const float *q_norm, *k_norm;  // [D] each, or both null
  float norm_epsilon;
  C *present_k, *present_v;
  float* out;
  int64_t chunks = 0;                    // a decode step's key chunks a row (attend_chunk)
  Exponentials* chunk_stats = nullptr;   // [B, kv_heads, chunks, group]
  float* chunk_sums = nullptr;           // [B, kv_heads, chunks, group, D], not yet divided by the sums

  int64_t start(int64_t b) const {  // position of row b's first new token
    return first_prompt ? 0 : seqlens[b] + 1 - s->seq;
  }
  // x rotated to `position` (GroupQueryAttention's non-interleaved rotary: halves x1, x2),
  // RMS-normalized first with `norm` where it is not null.
  void rotate(const float* x, const float* norm, int64_t position, float factor, float* y) const {
    const int64_t d = s->head_size, half = d / 2;
    const float *c = cos + position * half, *sn = sin + position * half;
    if (norm) {  // normalized into y, then rotated there
      const float r = inverse_rms(x, d, norm_epsilon);
      for (int64_t i = 0; i < d; ++i) y[i] = x[i] * r * norm[i];
      x = y;
    }
    for (int64_t i = 0; i < half; ++i) {
      const float x1 = x[i], x2 = x[i + half];  // read before y's pair is written
      y[i] = (x1 * c[i] - x2 * sn[i]) * factor;
      y[i + half] = (x2 * c[i] + x1 * sn[i]) * factor;
    }
  }
  int64_t last_key(int64_t b, int64_t t) const {  // padding rows see the row's own tokens
    return std::min<int64_t>(start(b) + t, seqlens[b]);
  }
  int64_t first_key(int64_t b, int64_t t) const {
    return window > 0 ? std::max<int64_t>(0, last_key(b, t) - window + 1) : 0;
  }
  Exponentials exponentials(float* scores, int64_t n) const {  // the soft cap, then exponentiate
    if (softcap > 0.f) math->softcap(scores, n, softcap);
    return math->exponentiate(scores, n);
  }
  C* cache_row(C* cache, int64_t b, int64_t g, int64_t position) const {
    return cache + ((b * s->kv_heads + g) * s->present_len + position) * s->head_size;
  }
};

// The new keys (rotated) and values into present, one task per row b and cache head g.
template <typename C>
void store_new(void* data, size_t task) {
  const Job<C>& job = *static_cast<const Job<C>*>(data);
  const Shapes& s = *job.s;
  const int64_t b = static_cast<int64_t>(task) / s.kv_heads, g = static_cast<int64_t>(task) % s.kv_heads;
  thread_local std::vector<float> rotated;
  rotated.resize(s.head_size);
  for (int64_t t = 0; t < s.seq; ++t) {
    const int64_t row = b * s.seq + t, position = job.start(b) + t;
    job.rotate(job.k + row * job.kv_width + job.k_offset + g * s.head_size, job.k_norm, position, 1.f, rotated.data());
    job.math->store(rotated.data(), s.head_size, job.cache_row(job.present_k, b, g, position));
    job.math->store(job.v + row * job.kv_width + job.v_offset + g * s.head_size, s.head_size,
                    job.cache_row(job.present_v, b, g, position));
  }
}

// One chunk of a decode row's keys with all the query heads of cache head g: task =
// (b * kv_heads + g) * chunks + c. Leaves each head's exponentials and weighted sum for
// merge_chunks.
template <typename C>
void attend_chunk(void* data, size_t task) {
  const Job<C>& job = *static_cast<const Job<C>*>(data);
  const Shapes& s = *job.s;
  const int64_t group = s.heads / s.kv_heads, d = s.head_size, c = static_cast<int64_t>(task) % job.chunks;
  const int64_t bg = static_cast<int64_t>(task) / job.chunks, b = bg / s.kv_heads, g = bg % s.kv_heads;
  const int64_t first = job.first_key(b, 0) + c * kKeyChunk;
  const int64_t n = std::min(kKeyChunk, job.last_key(b, 0) + 1 - first);
  Exponentials* stats = job.chunk_stats + task * group;
  if (n <= 0) {  // a shorter row of the batch
    std::fill(stats, stats + group, Exponentials{-INFINITY, 0.f});
    return;
  }
  thread_local std::vector<float> q, scores;
  q.resize(group * d);
  scores.resize(group * n);
  for (int64_t r = 0; r < group; ++r) {
    job.rotate(job.q + b * job.q_width + (g * group + r) * d, job.q_norm, job.start(b), job.scale, q.data() + r * d);
  }
  job.math->scores(q.data(), group, job.cache_row(job.present_k, b, g, first), n, d, scores.data());
  for (int64_t r = 0; r < group; ++r) stats[r] = job.exponentials(scores.data() + r * n, n);
  job.math->weighted_sum(scores.data(), group, job.cache_row(job.present_v, b, g, first), n, d,
                         job.chunk_sums + task * group * d);
}

// A decode step's output from attend_chunk's: each head's chunks brought to one max, then divided
// by the sum of their exponentials.
template <typename C>
void merge_chunks(const Job<C>& job) {
  const Shapes& s = *job.s;
  const int64_t group = s.heads / s.kv_heads, d = s.head_size;
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t h = 0; h < s.heads; ++h) {
      const int64_t first_task = (b * s.kv_heads + h / group) * job.chunks, r = h % group;
      float top = -INFINITY, total = 0.f;
      for (int64_t c = 0; c < job.chunks; ++c) top = std::max(top, job.chunk_stats[(first_task + c) * group + r].max);
      float* out = job.out + (b * s.heads + h) * d;
      std::fill(out, out + d, 0.f);
      for (int64_t c = 0; c < job.chunks; ++c) {
        const Exponentials chunk = job.chunk_stats[(first_task + c) * group + r];
        if (chunk.sum == 0.f) continue;
        const float weight = std::exp(chunk.max - top);
        const float* sums = job.chunk_sums + ((first_task + c) * group + r) * d;
        total += weight * chunk.sum;
        for (int64_t i = 0; i < d; ++i) out[i] += weight * sums[i];
      }
      for (int64_t i = 0; i < d; ++i) out[i] /= total;
    }
  }
}

// A prompt's rows t0 .. t0 + kBlockRows - 1 with all the query heads of cache head g, the keys
// and values those rows see read once for all of them: task = (b * kv_heads + g) * blocks + block.
template <typename C>
void attend_block(void* data, size_t task) {
  const Job<C>& job = *static_cast<const Job<C>*>(data);
  const Shapes& s = *job.s;
  const int64_t blocks = (s.seq + kBlockRows - 1) / kBlockRows, group = s.heads / s.kv_heads, d = s.head_size;
  const int64_t bg = static_cast<int64_t>(task) / blocks, t0 = static_cast<int64_t>(task) % blocks * kBlockRows;
  const int64_t b = bg / s.kv_heads, g = bg % s.kv_heads, rows = std::min(kBlockRows, s.seq - t0);
  const int64_t first = job.first_key(b, t0), n = job.last_key(b, t0 + rows - 1) - first + 1, queries = rows * group;
  thread_local std::vector<float> q, scores, out, inverse_sums;
  q.resize(queries * d);
  scores.resize(queries * n);
  out.resize(queries * d);
  inverse_sums.resize(queries);
  for (int64_t t = t0 + kBlockRows; t < std::min(s.seq, t0 + 2 * kBlockRows); ++t) {  // the next block's
    prefetch(job.q + (b * s.seq + t) * job.q_width + g * group * d, group * d * sizeof(float));
    prefetch(job.cos + (job.start(b) + t) * d / 2, d / 2 * sizeof(float));
    prefetch(job.sin + (job.start(b) + t) * d / 2, d / 2 * sizeof(float));
  }
  for (int64_t r = 0; r < queries; ++r) {  // query r: row t0 + r / group, head g * group + r % group
    const int64_t t = t0 + r / group, h = g * group + r % group;
    job.rotate(job.q + (b * s.seq + t) * job.q_width + h * d, job.q_norm, job.start(b) + t, job.scale, q.data() + r * d);
  }
  job.math->scores(q.data(), queries, job.cache_row(job.present_k, b, g, first), n, d, scores.data());
  for (int64_t r = 0; r < queries; ++r) {  // each row's own keys; the others weigh 0
    const int64_t t = t0 + r / group, from = job.first_key(b, t) - first, to = job.last_key(b, t) - first + 1;
    float* row = scores.data() + r * n;
    inverse_sums[r] = 1.f / job.exponentials(row + from, to - from).sum;
    std::fill(row, row + from, 0.f);
    std::fill(row + to, row + n, 0.f);
  }
  job.math->weighted_sum(scores.data(), queries, job.cache_row(job.present_v, b, g, first), n, d, out.data());
  for (int64_t r = 0; r < queries; ++r) {
    const int64_t t = t0 + r / group, h = g * group + r % group;
    float* y = job.out + ((b * s.seq + t) * s.heads + h) * d;
    for (int64_t i = 0; i < d; ++i) y[i] = out[r * d + i] * inverse_sums[r];
  }
}

}  // namespace

AttentionKernel::AttentionKernel(const OrtApi& api, const OrtKernelInfo* info) {
  Ort::ConstKernelInfo attrs(info);
  heads_ = attrs.GetAttribute<int64_t>("num_heads");
  kv_heads_ = attrs.GetAttribute<int64_t>("kv_num_heads");
  scale_ = attrs.GetAttribute<float>("scale");
  softcap_ = attrs.GetAttribute<float>("softcap");
  window_ = attrs.GetAttribute<int64_t>("local_window_size");
  if (OrtStatus* absent = api.KernelInfoGetAttribute_float(info, "qk_norm_epsilon", &qk_norm_epsilon_)) {
    api.ReleaseStatus(absent);
    qk_norm_epsilon_ = -1.f;
  }
  if (attrs.GetAttribute<int64_t>("do_rotary") != 1 || attrs.GetAttribute<int64_t>("rotary_interleaved") != 0) {
    fail("only do_rotary=1 with rotary_interleaved=0 is implemented");
  }
  if (heads_ <= 0 || kv_heads_ <= 0 || heads_ % kv_heads_) fail("num_heads must be a multiple of kv_num_heads");
  width_ = session_vector_width();
}

void AttentionKernel::Compute(OrtKernelContext* context) {
  Ort::KernelContext ctx(context);
  const OrtValue* query = input_value(context, 0);
  Attend(context, {data_of<float>(query), dims_of(query, "Attention"), ctx.GetInput(1), ctx.GetInput(2), 3, 1, nullptr});
}

void AttentionKernel::Attend(OrtKernelContext* context, const AttentionIo& io) {
  Ort::KernelContext ctx(context);
  const Ort::ConstValue key{io.key}, value{io.value};
  const size_t at = io.past_key;
  const Ort::ConstValue past_k = ctx.GetInput(at), past_v = ctx.GetInput(at + 1), seqlens = ctx.GetInput(at + 2);
  const Ort::ConstValue total = ctx.GetInput(at + 3), cos = ctx.GetInput(at + 4), sin = ctx.GetInput(at + 5);
  // q_norm, k_norm: not in graphs without them (Gemma 2's, or exported before them)
  const Ort::ConstValue q_norm = ctx.GetInputCount() > at + 6 ? ctx.GetInput(at + 6) : Ort::ConstValue{nullptr};
  const Ort::ConstValue k_norm = ctx.GetInputCount() > at + 7 ? ctx.GetInput(at + 7) : Ort::ConstValue{nullptr};
  const int64_t* q_shape = io.query_shape.at;
  const std::vector<int64_t> past_shape = past_k.GetTensorTypeAndShapeInfo().GetShape();
  const std::vector<int64_t> cos_shape = cos.GetTensorTypeAndShapeInfo().GetShape();
  if (io.query_shape.rank != 3 || past_shape.size() != 4) fail("query must be [B, S, width] and past_key [B, kv_heads, capacity, D]");
  Shapes s{q_shape[0], q_shape[1], heads_, kv_heads_, past_shape[3], past_shape[2], 0, cos_shape.empty() ? 0 : cos_shape[0],
           static_cast<const OrtValue*>(key) == nullptr};
  const int64_t total_len = *total.GetTensorData<int32_t>();
  if (past_shape[0] != s.batch || past_shape[1] != s.kv_heads || cos_shape.size() != 2 || cos_shape[1] * 2 != s.head_size) {
    fail("past_key and cos_cache do not match the query's batch, kv_num_heads and head size");
  }
  const int64_t kv_width = (s.packed ? s.heads + 2 * s.kv_heads : s.kv_heads) * s.head_size;
  const int64_t q_width = s.packed ? kv_width : s.heads * s.head_size;
  if (q_shape[2] != q_width) fail("the query's last dimension does not match num_heads and the cache's head size");
  if (s.head_size % 8) fail("the head size must be a multiple of 8");
  const bool normed = static_cast<const OrtValue*>(q_norm) != nullptr;
  if (normed != (static_cast<const OrtValue*>(k_norm) != nullptr)) fail("q_norm and k_norm come together");
  if (normed && (q_norm.GetTensorTypeAndShapeInfo().GetShape() != std::vector<int64_t>{s.head_size} ||
                 k_norm.GetTensorTypeAndShapeInfo().GetShape() != std::vector<int64_t>{s.head_size})) {
    fail("q_norm and k_norm must each hold the head size's values");
  }
  if (normed && qk_norm_epsilon_ < 0.f) fail("q_norm and k_norm need the attribute qk_norm_epsilon");
  s.present_len = std::max(s.capacity, total_len);
  const int32_t* lengths = seqlens.GetTensorData<int32_t>();
  const bool first_prompt = s.seq == total_len;
  for (int64_t b = 0; b < s.batch; ++b) {
    const int64_t start = first_prompt ? 0 : lengths[b] + 1 - s.seq;
    if (lengths[b] + 1 > total_len || start < 0 || start + s.seq > s.present_len || start + s.seq > s.rotary_rows) {
      fail("seqlens_k[" + std::to_string(b) + "] = " + std::to_string(lengths[b]) + " does not fit " +
           std::to_string(s.seq) + " new tokens, the cache and the rotary tables");
    }
  }
  const std::vector<int64_t> present_shape{s.batch, s.kv_heads, s.present_len, s.head_size};
  float* out = io.out ? io.out
                      : ctx.GetOutput(0, std::vector<int64_t>{s.batch, s.seq, s.heads * s.head_size}).GetTensorMutableData<float>();
  Ort::UnownedValue present_k = ctx.GetOutput(io.present_key, present_shape);
  Ort::UnownedValue present_v = ctx.GetOutput(io.present_key + 1, present_shape);
  const float* q = io.query;
  auto attend = [&](auto element) {  // on a cache of element's type
    using C = decltype(element);
    C* pk = present_k.GetTensorMutableData<C>();
    C* pv = present_v.GetTensorMutableData<C>();
    const C* old_k = past_k.GetTensorData<C>();
    const C* old_v = past_v.GetTensorData<C>();
    if (pk != old_k || pv != old_v) {  // not one buffer: what the past holds comes along (rows may widen)
      for (int64_t bg = 0; bg < s.batch * s.kv_heads; ++bg) {
        const size_t bytes = s.capacity * s.head_size * sizeof(C);
        std::memcpy(pk + bg * s.present_len * s.head_size, old_k + bg * s.capacity * s.head_size, bytes);
        std::memcpy(pv + bg * s.present_len * s.head_size, old_v + bg * s.capacity * s.head_size, bytes);
      }
    }
    const RowMath<C> math = row_math<C>(s.head_size, width_);
    Job<C> job{&s, &math, q, s.packed ? q : key.GetTensorData<float>(), s.packed ? q : value.GetTensorData<float>(),
               cos.GetTensorData<float>(), sin.GetTensorData<float>(), q_width, kv_width,
               s.packed ? s.heads * s.head_size : 0, s.packed ? (s.heads + s.kv_heads) * s.head_size : 0,
               lengths, first_prompt, scale_, softcap_, window_, normed ? q_norm.GetTensorData<float>() : nullptr,
               normed ? k_norm.GetTensorData<float>() : nullptr, qk_norm_epsilon_, pk, pv,
               out};
    ctx.ParallelFor(store_new<C>, static_cast<size_t>(s.batch * s.kv_heads), 0, &job);
    if (s.seq == 1) {
      int64_t longest = 1;
      for (int64_t b = 0; b < s.batch; ++b) longest = std::max(longest, job.last_key(b, 0) - job.first_key(b, 0) + 1);
      job.chunks = (longest + kKeyChunk - 1) / kKeyChunk;
      const int64_t tasks = s.batch * s.kv_heads * job.chunks;
      thread_local std::vector<Exponentials> stats;  // the calling thread's, reused
      thread_local std::vector<float> sums;
      stats.resize(tasks * s.heads / s.kv_heads);
      sums.resize(stats.size() * s.head_size);
      job.chunk_stats = stats.data(), job.chunk_sums = sums.data();
      ctx.ParallelFor(attend_chunk<C>, static_cast<size_t>(tasks), 0, &job);
      merge_chunks(job);
    } else {
      const int64_t blocks = (s.seq + kBlockRows - 1) / kBlockRows;
      ctx.ParallelFor(attend_block<C>, static_cast<size_t>(s.batch * s.kv_heads * blocks), 0, &job);
    }
  };
  if (past_k.GetTensorTypeAndShapeInfo().GetElementType() == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16) {
    attend(Half{});
  } else {
    attend(0.f);
  }
}

}  // namespace gemma_nb
