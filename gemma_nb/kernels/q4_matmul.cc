// gemma-nb's 4-bit CPU kernel (`--dtype int4-cpu`): ops Q4MatMul and Q4Gather, domain gemma_nb.
//
// ONNX Runtime's MatMulNBits makes MLAS copy every weight into its own packed layout at load
// (seconds of CPU, and a second copy in memory). These ops read the weights straight from the
// mapped file, in a layout made for AVX-512 VNNI: a weight [N, K] is cut into tiles of 16 rows (n)
// by one block of 32 columns (k), 256 bytes each, tiles[N/16][K/32][256], where for L = 0..3,
// r = 0..15 and j = 0..3 byte L*64 + 4r + j holds code q[r][8L + j] in its low nibble and
// q[r][8L + 4 + j] in its high one. One 64-byte load, masked or shifted, then gives 16 rows x 4
// columns of codes, which `vpdpbusd` multiplies with 4 int8 activations broadcast to all rows.
// Per tile row and block: an fp16 scale, scales[N/16][K/32][16], and a 4-bit zero point,
// zeros[N/16][K/32][8], byte j holding row j's in its low nibble and row j + 8's in its high one,
// so a weight is scale * (q - zero) (4.625 bits a weight in all). The kernel folds the zero
// point into a minimum, -scale * zero, in fp32.
//
// Q4MatMul(A float [..., K], tiles, scales, zeros, norm? [N], residual? [..., N], next_norm? [N])
//   -> Y [..., N], sum? [..., N]. With the three optional inputs (attribute norm_epsilon), the
//   o and down projections of a Gemma block take their norms and residual add along:
//   sum = residual + rms_norm(A W^T) * norm, Y = rms_norm(sum) * next_norm, in place of a
//   SimplifiedLayerNormalization and a SkipSimplifiedLayerNormalization after the product.
//   With the attribute geglu = 1 (the MLP's gate|up projection, its tile rows alternating 16 gate
//   outputs and the same 16 up outputs), Y [..., N/2] = gelu_tanh(gate) * up, as the GeGLU op
//   computes it, in place of that op after the product: the product stays in each task's cache
//   and never goes to memory.
// Q4Gather(tiles, scales, zeros, ids int64 [...]) -> [..., K] (rows of a tied embedding table)
//
// Paths, chosen from what the CPU has; GEMMA_NB_KERNEL_ISA (exact, generic, avx2, avx512-vnni
// or amx), read as a session is made, caps the choice, like oneDNN's ONEDNN_MAX_CPU_ISA:
// - avx512-vnni (decode, the rows left over below, and every prompt row on a CPU without AMX):
//   activations quantized to int8 per block of 32 (scale absmax / 127), like MatMulNBits at
//   accuracy level 4, so that sum_k w x = sum_blocks sx * (scale * dot(q, xq) + min * sum(xq)), with `vpdpbusd`;
//   calls of 32 rows or more (prompts) take it as sx * scale * dot(q - zero, xq), with sx the
//   power of two at or above absmax / 127 (prepared_rows).
// - amx (prompts, 16 rows at a time): bf16 tile products (see tile_columns_amx).
// - avx2: the same int8 arithmetic, 8 rows of a tile a register, `vpmaddubsw` + `vpmaddwd` in
//   place of `vpdpbusd` (8 code x activation pairs summed in int16 stay under 8 * 2 * 15 * 127).
// - generic: the same arithmetic in plain C++, for every other CPU.
// - exact (only when asked for): fp32 activations times the dequantized weights, like
//   MatMulNBits at accuracy level 0; slow, for checking a whole model against a reference.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "attention.h"
#include "decoder_layer.h"
#include "geglu.h"
#include "onnxruntime_lite_custom_op.h"
#include "ort_values.h"
#include "q4_projection.h"
#include "rms_norm.h"

namespace {

constexpr int64_t kBlock = 32, kTile = 16, kTileBytes = 256, kZeroBytes = 8;
constexpr float kMagic = 12582912.f;  // 1.5 * 2^23: the prompt form's scales (prepared_rows)
constexpr int kRows = 8;  // activation rows that share one unpacking of a tile's codes
// From this many rows, a call unpacks each tile row's codes once for all its rows (prepare_tile).
// Below it, that separate pass over the weights costs more than it saves (one 2304x9216 op from
// DRAM, one thread: 0.87x at 16 rows, 0.99x at 24, 1.06x at 32, 1.17x at 48).
constexpr int64_t kPreparedRows = 32;
// Decode streams the codes once; asking for them this far ahead keeps enough reads in flight for
// 2 cores to reach the read bandwidth (4-8 KB: 1.4-1.5x the decode speed without, 2B shape).
// With prefetchnta (prefetch_ahead), 8 KB against 4 KB, alternating in one process: the 270M's
// decode 1.03-1.05x (the avx2 path 1.05x), the 2B shape's 1.04x; 2 KB 0.94x, 12-16 KB 1.02-1.05x.
constexpr int64_t kPrefetchBytes = 8192;

enum Isa : int { kExact = 0, kGeneric = 1, kAvx2 = 2, kAvx512Vnni = 3, kAmx = 4 };
const char* const kIsaNames[] = {"exact", "generic", "avx2", "avx512-vnni", "amx"};

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1f,
                 mantissa = h & 0x3ff;
  if (exponent == 0) {  // zero or subnormal
    const float f = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -f : f;
  }
  const uint32_t bits = exponent == 31 ? sign | 0x7f800000u | (mantissa << 13)
                                       : sign | ((exponent + 112) << 23) | (mantissa << 13);
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

struct QuantizedRows {
  std::vector<int8_t> q;
  std::vector<float> scale;       // per block: sx (the prompt form: sx a power of two, kept as kMagic * sx)
  std::vector<float> scaled_sum;  // per block: sx * sum(xq)
};

using QuantizeBlock = void (*)(const float* a, QuantizedRows& out, int64_t i);

void quantize_block_generic(const float* a, QuantizedRows& out, int64_t i) {
  const float* x = a + i * kBlock;
  float amax = 0.f;
  for (int j = 0; j < kBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float inv = amax > 0 ? 127.f / amax : 0.f;
  int32_t sum = 0;
  for (int j = 0; j < kBlock; ++j) {
    const int32_t q = static_cast<int32_t>(std::nearbyint(x[j] * inv));
    out.q[i * kBlock + j] = static_cast<int8_t>(std::clamp(q, -128, 127));
    sum += q;
  }
  out.scale[i] = amax / 127.f;
  out.scaled_sum[i] = out.scale[i] * static_cast<float>(sum);
}

// The code of row r, input c (0..31) in one block of a tile (the layout in the header).
inline int tile_code(const uint8_t* block, int r, int c) {
  const uint8_t byte = block[(c / 8) * 64 + 4 * r + c % 4];
  return (c / 4) % 2 ? byte >> 4 : byte & 15;
}

// The minimum of row r in one block: -scale * zero (zeros: the block's 8 bytes).
inline float tile_min(float scale, const uint8_t* zeros, int r) {
  return -scale * static_cast<float>((zeros[r % 8] >> (4 * (r / 8))) & 15);
}

struct TileRow {  // one row of tiles (16 outputs, all of K): codes [blocks][256], scales [blocks][16], zeros [blocks][8]
  const uint8_t* codes;
  const uint16_t* scales;
  const uint8_t* zeros;
};

struct MatMulJob {
  const float* a;  // [m][K]
  const uint8_t* tiles;
  const uint16_t* scales;
  const uint8_t* zeros;
  const QuantizedRows* x;  // rows first_row .. m - 1, quantized
  float* out;
  int64_t m, n, blocks;
  int64_t first_row;  // rows before it were done on AMX
  int64_t out_stride, out_tile0;  // out's row length, and the tile row out's first 16 columns hold
  // 0, or the gate|up tile row pairs out holds (geglu): tile row out_tile0 + 2i, a gate one, in
  // columns 16i.., and the next one, its up, in columns 16 (out_pairs + i)..: gate, then up
  int64_t out_pairs;

  TileRow tile_row(int64_t tile) const {
    return {tiles + tile * blocks * kTileBytes, scales + tile * blocks * kTile, zeros + tile * blocks * kZeroBytes};
  }
  float* out_at(int64_t row, int64_t tile) const {
    const int64_t t = tile - out_tile0;
    return out + row * out_stride + (out_pairs ? t / 2 + t % 2 * out_pairs : t) * kTile;
  }
};

// What a path computes: rows first_row .. m - 1 of the output in tile rows tile0 .. tile0 + count - 1.
using TileRange = void (*)(const MatMulJob& job, int64_t tile0, int64_t count);

// One output row in the 16 columns of one tile row, with the arithmetic of tile_rows_vnni below.
void tile_row_generic(const MatMulJob& job, int64_t tile, int64_t row) {
  const TileRow weights = job.tile_row(tile);
  float acc[kTile] = {};
  for (int64_t b = 0; b < job.blocks; ++b) {
    const uint8_t* w = weights.codes + b * kTileBytes;
    const int64_t xb = (row - job.first_row) * job.blocks + b;
    const int8_t* xq = job.x->q.data() + xb * kBlock;
    const float sx = job.x->scale[xb], scaled_sum = job.x->scaled_sum[xb];
    for (int r = 0; r < kTile; ++r) {
      int32_t dot = 0;
      for (int c = 0; c < kBlock; ++c) dot += tile_code(w, r, c) * xq[c];
      const float scale = half_to_float(weights.scales[b * kTile + r]);
      acc[r] += static_cast<float>(dot) * (scale * sx) + tile_min(scale, weights.zeros + b * kZeroBytes, r) * scaled_sum;
    }
  }
  std::copy(acc, acc + kTile, job.out_at(row, tile));
}

void tiles_generic(const MatMulJob& job, int64_t tile0, int64_t count) {
  for (int64_t tile = tile0; tile < tile0 + count; ++tile) {
    for (int64_t r = job.first_row; r < job.m; ++r) tile_row_generic(job, tile, r);
  }
}

void tile_exact(const MatMulJob& job, int64_t tile) {
  for (int64_t row = 0; row < job.m; ++row) {
    const float* x = job.a + row * job.blocks * kBlock;
    const TileRow weights = job.tile_row(tile);
    float acc[kTile] = {};
    for (int64_t b = 0; b < job.blocks; ++b) {
      const uint8_t* w = weights.codes + b * kTileBytes;
      const float* xb = x + b * kBlock;
      for (int r = 0; r < kTile; ++r) {
        const float s = half_to_float(weights.scales[b * kTile + r]), m = tile_min(s, weights.zeros + b * kZeroBytes, r);
        for (int c = 0; c < kBlock; ++c) acc[r] += (s * tile_code(w, r, c) + m) * xb[c];
      }
    }
    std::copy(acc, acc + kTile, job.out_at(row, tile));
  }
}

void tiles_exact(const MatMulJob& job, int64_t tile0, int64_t count) {
  for (int64_t tile = tile0; tile < tile0 + count; ++tile) tile_exact(job, tile);
}

#if defined(__x86_64__)
// A request for the codes kPrefetchBytes ahead of `codes`. Decode asks non-temporally
// (prefetchnta): it reads them once, so they pass through L1 only and do not push out of L2 and
// the L3 what the next op reads again (onnxruntime's state between nodes, the activations, the
// KV cache). The time between two ops fell from 3.8-4.2 to 2.8-3.6 us on the 270M; alternating in
// one process, its decode ran 1.01-1.05x as fast as with prefetcht0 (the avx2 path 1.03x), the 2B
// shape's 1.02-1.03x. Prompts (prepare_tile), compute-bound, keep prefetcht0.
template <_mm_hint Hint = _MM_HINT_NTA>
inline void prefetch_ahead(const uint8_t* codes) {
  _mm_prefetch(reinterpret_cast<const char*>(codes + kPrefetchBytes), Hint);
}

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

// The zero points of rows 8 half .. 8 half + 7 of one block (zeros: its 8 bytes), as int32.
__m256i half_zeros(const uint8_t* zeros, int half) {
  const __m256i bytes = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(zeros)));
  return _mm256_and_si256(_mm256_srli_epi32(bytes, 4 * half), _mm256_set1_epi32(15));
}

// Rows row0 .. row0 + R - 1 of the output, in the 16 columns of one tile row: rows 0-7 of the
// tile (the first 32 bytes of each 64), then rows 8-15.
template <int R>
void tile_rows_avx2(const MatMulJob& job, int64_t tile, int64_t row0) {
  const auto [w, sc, zeros] = job.tile_row(tile);
  const QuantizedRows& x = *job.x;
  const __m256i low_nibbles = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  for (int half = 0; half < 2; ++half) {
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < job.blocks; ++b) {
      __m256i codes[8];  // codes[t]: 8 rows x columns 4t .. 4t + 3
      for (int L = 0; L < 4; ++L) {
        if (half == 0) prefetch_ahead(w + b * kTileBytes + L * 64);
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + b * kTileBytes + L * 64 + 32 * half));
        codes[2 * L] = _mm256_and_si256(v, low_nibbles);
        codes[2 * L + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low_nibbles);
      }
      const __m256 scale = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc + b * kTile + 8 * half)));
      const __m256 zero = _mm256_cvtepi32_ps(half_zeros(zeros + b * kZeroBytes, half));
      const __m256 min = _mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), scale), zero);
      for (int r = 0; r < R; ++r) {
        const int64_t xb = (row0 + r - job.first_row) * job.blocks + b;
        const int32_t* xq = reinterpret_cast<const int32_t*>(x.q.data() + xb * kBlock);
        __m256i pairs = _mm256_setzero_si256();
        for (int t = 0; t < 8; ++t) {
          pairs = _mm256_add_epi16(pairs, _mm256_maddubs_epi16(codes[t], _mm256_set1_epi32(xq[t])));
        }
        const __m256i dot = _mm256_madd_epi16(pairs, ones);
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(scale, _mm256_set1_ps(x.scale[xb])), acc[r]);
        acc[r] = _mm256_fmadd_ps(min, _mm256_set1_ps(x.scaled_sum[xb]), acc[r]);
      }
    }
    for (int r = 0; r < R; ++r) _mm256_storeu_ps(job.out_at(row0 + r, tile) + 8 * half, acc[r]);
  }
}

void tiles_avx2(const MatMulJob& job, int64_t tile0, int64_t count) {
  for (int64_t tile = tile0; tile < tile0 + count; ++tile) {
    int64_t r = job.first_row;
    for (; r + 4 <= job.m; r += 4) tile_rows_avx2<4>(job, tile, r);
    for (; r < job.m; ++r) tile_rows_avx2<1>(job, tile, r);
  }
}

#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma")

// The prompt form's block scale: the least power of two 2^e >= absmax / 127, so that dot * 2^e
// is exact in fp32 with no multiply (prepared_rows). Its int8 steps are 1-2x those of absmax / 127.
int power_of_two_scale(float amax) {
  const float ratio = amax / 127.f;
  uint32_t bits;
  std::memcpy(&bits, &ratio, sizeof bits);
  const int e = static_cast<int>(bits >> 23) - 127 + ((bits & 0x7FFFFF) != 0);  // ceil(log2(ratio)), ratio >= 0
  return std::clamp(e, -126, 104);  // 2^-e and kMagic * 2^e: normal floats
}

float times_power_of_two(float f, int e) {  // f * 2^e for a normal f and a normal result, in its exponent bits
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  bits += static_cast<uint32_t>(e) << 23;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Prompt: the prompt form's activations for prepared_rows: xq + 128 (1..255), since vpdpbusd's
// first operand is unsigned and there the codes are signed, and a power-of-two scale.
template <bool Prompt>
void quantize_block_vnni(const float* a, QuantizedRows& out, int64_t i) {
  const float* x = a + i * kBlock;
  const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
  const int e = Prompt ? power_of_two_scale(amax) : 0;  // amax 0: every xq 0
  const __m512 inv = _mm512_set1_ps(Prompt ? times_power_of_two(1.f, -e) : amax > 0 ? 127.f / amax : 0.f);
  const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, inv));
  const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, inv));
  int8_t* q = out.q.data() + i * kBlock;
  const __m128i flip = _mm_set1_epi8(Prompt ? static_cast<char>(0x80) : 0);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm_xor_si128(_mm512_cvtsepi32_epi8(q0), flip));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16), _mm_xor_si128(_mm512_cvtsepi32_epi8(q1), flip));
  if (Prompt) {  // prepared_rows has no minimums to scale
    out.scale[i] = times_power_of_two(kMagic, e);
  } else {
    out.scale[i] = amax / 127.f;
    out.scaled_sum[i] = out.scale[i] * _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
  }
}

// The 16 rows' zero points of one block (zeros: its 8 bytes), as int32: the 8 bytes twice, the
// second copy shifted to its high nibbles.
__m512i block_zeros(const uint8_t* zeros) {
  const __m128i eight = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(zeros));
  const __m512i shifts = _mm512_set_epi32(4, 4, 4, 4, 4, 4, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i bytes = _mm512_cvtepu8_epi32(_mm_unpacklo_epi64(eight, eight));
  return _mm512_and_si512(_mm512_srlv_epi32(bytes, shifts), _mm512_set1_epi32(15));
}

// The 16 rows' minimums of one block, -scale * zero.
__m512 block_mins(__m512 scale, const uint8_t* zeros) {
  return _mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), scale), _mm512_cvtepi32_ps(block_zeros(zeros)));
}

// Rows row0 .. row0 + R - 1 of the output, in the 16 columns of one tile row.
template <int R>
void tile_rows_vnni(const MatMulJob& job, int64_t tile, int64_t row0) {
  const auto [w, sc, zeros] = job.tile_row(tile);
  const QuantizedRows& x = *job.x;
  const __m512i low_nibbles = _mm512_set1_epi8(0x0F);
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < job.blocks; ++b) {
    __m512i codes[8];  // codes[t]: 16 rows x columns 4t .. 4t + 3
    for (int L = 0; L < 4; ++L) {
      prefetch_ahead(w + b * kTileBytes + L * 64);
    }
    for (int L = 0; L < 4; ++L) {
      const __m512i v = _mm512_loadu_si512(w + b * kTileBytes + L * 64);
      codes[2 * L] = _mm512_and_si512(v, low_nibbles);
      codes[2 * L + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low_nibbles);
    }
    const __m512 scale = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sc + b * kTile)));
    const __m512 min = block_mins(scale, zeros + b * kZeroBytes);
#pragma GCC unroll 8  // rolled, GCC keeps the R accumulators in memory: 1.2x the prompt speed unrolled
    for (int r = 0; r < R; ++r) {
      const int64_t xb = (row0 + r - job.first_row) * job.blocks + b;
      const int32_t* xq = reinterpret_cast<const int32_t*>(x.q.data() + xb * kBlock);
      __m512i dot = _mm512_setzero_si512();
      for (int t = 0; t < 8; ++t) dot = _mm512_dpbusd_epi32(dot, codes[t], _mm512_set1_epi32(xq[t]));
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(scale, _mm512_set1_ps(x.scale[xb])), acc[r]);
      acc[r] = _mm512_fmadd_ps(min, _mm512_set1_ps(x.scaled_sum[xb]), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(job.out_at(row0 + r, tile), acc[r]);
}

void tiles_vnni(const MatMulJob& job, int64_t tile0, int64_t count) {  // rows 8 at a time, then 4, 2, 1
  for (int64_t tile = tile0; tile < tile0 + count; ++tile) {
    int64_t r = job.first_row;
    for (; r + kRows <= job.m; r += kRows) tile_rows_vnni<kRows>(job, tile, r);
    if (r + 4 <= job.m) tile_rows_vnni<4>(job, tile, r), r += 4;
    if (r + 2 <= job.m) tile_rows_vnni<2>(job, tile, r), r += 2;
    if (r < job.m) tile_rows_vnni<1>(job, tile, r);
  }
}

// Prompts (kPreparedRows or more): a tile row's codes, unpacked once for all the rows of the call
// into signed q - zero, 8 vectors a block, and a ninth: the start of every dot in that block,
// -128 * sum(q - zero), which takes away what the activations add by being unsigned, xq + 128.
// The dot is then the exact sum xq (q - zero), and no nibbles are unpacked per row: 1.2x
// tile_rows_vnni at 512 rows. The activations' scale sx is a power of two, kept as kMagic * sx:
// adding the dot (|dot| <= 32 * 127 * 15 < 2^22) to that float's bits and subtracting it gives
// dot * sx exactly, in an integer add and a float add. So a block costs each row one multiply-add
// on the two pipes vpdpbusd runs on, not a multiply too (the products 1.07-1.13x,
// 2304 x 18432 and 9216 x 2304, 256 rows, one core).
constexpr int kPrepared = 9;  // vectors a block

void prepare_tile(const TileRow& weights, int64_t blocks, __m512i* out) {
  const __m512i low_nibbles = _mm512_set1_epi8(0x0F), bias = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i low_byte_to_all = _mm512_set4_epi32(0x0C0C0C0C, 0x08080808, 0x04040404, 0);  // each dword's byte 0, 4 times
  for (int64_t b = 0; b < blocks; ++b) {
    const __m512i zero = _mm512_shuffle_epi8(block_zeros(weights.zeros + b * kZeroBytes), low_byte_to_all);
    __m512i sum = _mm512_setzero_si512();  // per byte: 8 values of q - zero, |sum| <= 120
    __m512i* p = out + b * kPrepared;
    for (int L = 0; L < 4; ++L) {
      prefetch_ahead<_MM_HINT_T0>(weights.codes + b * kTileBytes + L * 64);
    }
    for (int L = 0; L < 4; ++L) {
      const __m512i v = _mm512_loadu_si512(weights.codes + b * kTileBytes + L * 64);
      p[2 * L] = _mm512_sub_epi8(_mm512_and_si512(v, low_nibbles), zero);
      p[2 * L + 1] = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), low_nibbles), zero);
      sum = _mm512_add_epi8(sum, _mm512_add_epi8(p[2 * L], p[2 * L + 1]));
    }
    p[8] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, sum));
  }
}

// Rows row0 .. row0 + R - 1 of the output in T tile rows from tile0 (prepared: T tiles' vectors,
// one after the other). Each activation broadcast serves T tiles: with T = 1 the broadcasts
// alone kept the prompt path at ~660 GOPS a core, 3 x 4 runs ~770 (one 2304x9216 op, 512 rows).
template <int T, int R>
void prepared_rows(const MatMulJob& job, const __m512i* prepared, int64_t tile0, int64_t row0) {
  const QuantizedRows& x = *job.x;
  const int64_t per_tile = job.blocks * kPrepared;
  const int32_t* xq[R];  // the rows' quantized activations, 4 a dword
  const float* sx[R];
  const uint16_t* scales[T];
  for (int c = 0; c < T; ++c) scales[c] = job.tile_row(tile0 + c).scales;
  __m512 acc[T][R];
  for (int r = 0; r < R; ++r) {
    const int64_t first_block = (row0 + r - job.first_row) * job.blocks;
    xq[r] = reinterpret_cast<const int32_t*>(x.q.data() + first_block * kBlock);
    sx[r] = x.scale.data() + first_block;
    for (int c = 0; c < T; ++c) acc[c][r] = _mm512_setzero_ps();
  }
  for (int64_t b = 0; b < job.blocks; ++b) {
    const __m512i* p = prepared + b * kPrepared;
    __m512i dot[T][R];
    for (int c = 0; c < T; ++c) {
      const __m512i start = _mm512_load_si512(p + c * per_tile + 8);
      for (int r = 0; r < R; ++r) dot[c][r] = start;
    }
    for (int t = 0; t < 8; ++t) {
      __m512i codes[T];
      for (int c = 0; c < T; ++c) codes[c] = _mm512_load_si512(p + c * per_tile + t);
      for (int r = 0; r < R; ++r) {
        const __m512i xb = _mm512_set1_epi32(xq[r][8 * b + t]);
        for (int c = 0; c < T; ++c) dot[c][r] = _mm512_dpbusd_epi32(dot[c][r], xb, codes[c]);
      }
    }
    __m512i magic[R];  // the rows' kMagic * sx for this block
    for (int r = 0; r < R; ++r) magic[r] = _mm512_castps_si512(_mm512_set1_ps(sx[r][b]));
    for (int c = 0; c < T; ++c) {
      const __m512 scale = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(scales[c] + b * kTile)));
      for (int r = 0; r < R; ++r) {
        const __m512 scaled_dot = _mm512_sub_ps(_mm512_castsi512_ps(_mm512_add_epi32(dot[c][r], magic[r])),
                                                _mm512_castsi512_ps(magic[r]));
        acc[c][r] = _mm512_fmadd_ps(scaled_dot, scale, acc[c][r]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < T; ++c) _mm512_storeu_ps(job.out_at(row0 + r, tile0 + c), acc[c][r]);
  }
}

constexpr int64_t kPreparedTiles = 3, kPreparedRowsAtOnce = 4;  // a task's tile rows; rows a pass

template <int T>
void prepared_tiles(const MatMulJob& job, const __m512i* prepared, int64_t tile0) {
  int64_t r = job.first_row;
  for (; r + kPreparedRowsAtOnce <= job.m; r += kPreparedRowsAtOnce) {
    prepared_rows<T, kPreparedRowsAtOnce>(job, prepared, tile0, r);
  }
  for (; r < job.m; ++r) prepared_rows<T, 1>(job, prepared, tile0, r);
}

void tiles_prepared(const MatMulJob& job, int64_t tile0, int64_t count) {  // kPreparedTiles at a time; activations unsigned
  const int64_t per_tile = job.blocks * kPrepared;
  thread_local std::vector<uint8_t> buffer;  // the worker's, reused across tasks and calls
  buffer.resize(kPreparedTiles * per_tile * 64 + 64);
  __m512i* prepared = reinterpret_cast<__m512i*>((reinterpret_cast<uintptr_t>(buffer.data()) + 63) & ~uintptr_t{63});
  for (int64_t first = tile0; first < tile0 + count; first += kPreparedTiles) {
    const int64_t tiles = std::min(kPreparedTiles, tile0 + count - first);
    for (int64_t c = 0; c < tiles; ++c) prepare_tile(job.tile_row(first + c), job.blocks, prepared + c * per_tile);
    static_assert(kPreparedTiles == 3, "one prepared_tiles<T> below for each count a pass can have");
    if (tiles == 3) prepared_tiles<3>(job, prepared, first);
    if (tiles == 2) prepared_tiles<2>(job, prepared, first);
    if (tiles == 1) prepared_tiles<1>(job, prepared, first);
  }
}

#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,f16c,fma")

// Prompt rows (16 at a time) on AMX in bf16: a task takes two tiles of the weight (32 output
// columns) and dequantizes them once, for all of K, into the layout TDPBF16PS takes (K/2 rows of
// 16 columns x 2 consecutive k); then pairs of 16-row groups run K/32 tile products into four
// fp32 accumulator tiles (2 x 2, the 8 tile registers: 4 C, 2 A, 2 B), with no per-block work
// left: the scales are in the bf16 weights. Four independent accumulators keep TDPBF16PS busy
// where one would wait on its own latency, and each A and B tile loaded serves two products.
// The dequantized columns serve every row group, so their cost shrinks as the prompt grows.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t bytes_per_row[16] = {};
  uint8_t rows[16] = {};
};

// tmm0-3: C, 16 x 16 fp32 (row group g, column tile c: tmm 2g + c); tmm4-5: A, 16 x 32 bf16;
// tmm6-7: B, 16 x (16 x 2) bf16. Every tile is 16 rows of 64 bytes.
void configure_tiles() {
  TileConfig config;
  for (int t = 0; t < 8; ++t) config.bytes_per_row[t] = 64, config.rows[t] = 16;
  _tile_loadconfig(&config);
}

// B rows for one block of one tile: 16 rows of 64 bytes (row i: columns 0..15, k = 2i, 2i + 1).
void dequantize_block(const uint8_t* codes, const uint16_t* sc, const uint8_t* zeros, uint16_t* rows) {
  const __m512 scale = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sc)));
  const __m512 min = block_mins(scale, zeros);
  const __m512i first = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  const __m512i second = _mm512_add_epi32(first, _mm512_set1_epi32(8));
  const __m512 scale_lo = _mm512_permutexvar_ps(first, scale), scale_hi = _mm512_permutexvar_ps(second, scale);
  const __m512 min_lo = _mm512_permutexvar_ps(first, min), min_hi = _mm512_permutexvar_ps(second, min);
  const __m512i low_nibbles = _mm512_set1_epi8(0x0F);
  for (int L = 0; L < 4; ++L) {
    const __m512i v = _mm512_loadu_si512(codes + L * 64);
    const __m512i halves[2] = {_mm512_and_si512(v, low_nibbles),
                               _mm512_and_si512(_mm512_srli_epi16(v, 4), low_nibbles)};
    for (int h = 0; h < 2; ++h) {  // columns 4t .. 4t + 3 of every row, t = 2L + h
      const int t = 2 * L + h;
      for (int pair = 0; pair < 2; ++pair) {  // k = 4t + 2 pair, + 1: B row 2t + pair
        const __m512i words = pair ? _mm512_srli_epi32(halves[h], 16) : halves[h];
        const __m256i bytes = _mm512_cvtepi32_epi16(words);  // row r: its 2 codes, as 2 bytes
        const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(bytes)));
        const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(bytes, 1)));
        const __m512bh row = _mm512_cvtne2ps_pbh(_mm512_fmadd_ps(hi, scale_hi, min_hi),
                                                 _mm512_fmadd_ps(lo, scale_lo, min_lo));
        _mm512_store_si512(rows + (2 * t + pair) * 32, reinterpret_cast<const __m512i&>(row));
      }
    }
  }
}

struct Bf16Job {
  const float* a;
  uint16_t* out;
  int64_t k;
};

void to_bf16_row(void* data, size_t row) {
  const auto& job = *static_cast<const Bf16Job*>(data);
  const float* x = job.a + row * job.k;
  uint16_t* o = job.out + row * job.k;
  for (int64_t i = 0; i < job.k; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
    _mm512_storeu_si512(o + i, reinterpret_cast<const __m512i&>(v));
  }
}

struct AmxJob {
  const MatMulJob* job;
  const uint16_t* a;  // bf16 [m][K]
  int64_t groups;     // of 16 rows
};

// G row groups (from group g) by C column tiles (from tile0), G and C each 1 or 2.
template <int G, int C>
void amx_products(const AmxJob& amx, uint16_t* const b_rows[2], int64_t g, int64_t tile0) {
  const MatMulJob& job = *amx.job;
  const int64_t k = job.blocks * kBlock;
  const uint16_t* a = amx.a + g * 16 * k;
  _tile_zero(0);
  if (C > 1) _tile_zero(1);
  if (G > 1) _tile_zero(2);
  if (G > 1 && C > 1) _tile_zero(3);
  for (int64_t b = 0; b < job.blocks; ++b) {
    _tile_loadd(4, a + b * kBlock, k * 2);
    if (G > 1) _tile_loadd(5, a + 16 * k + b * kBlock, k * 2);
    _tile_loadd(6, b_rows[0] + b * 16 * 32, 64);
    if (C > 1) _tile_loadd(7, b_rows[1] + b * 16 * 32, 64);
    _tile_dpbf16ps(0, 4, 6);
    if (C > 1) _tile_dpbf16ps(1, 4, 7);
    if (G > 1) _tile_dpbf16ps(2, 5, 6);
    if (G > 1 && C > 1) _tile_dpbf16ps(3, 5, 7);
  }
  float *out = job.out_at(g * 16, tile0), *next = job.out_at(g * 16, tile0 + 1);  // next: C > 1
  const int64_t stride = job.out_stride * 4;
  _tile_stored(0, out, stride);
  if (C > 1) _tile_stored(1, next, stride);
  if (G > 1) _tile_stored(2, out + 16 * job.out_stride, stride);
  if (G > 1 && C > 1) _tile_stored(3, next + 16 * job.out_stride, stride);
}

template <int C>
void amx_columns(const AmxJob& amx, uint16_t* const b_rows[2], int64_t tile0) {
  int64_t g = 0;
  for (; g + 2 <= amx.groups; g += 2) amx_products<2, C>(amx, b_rows, g, tile0);
  if (g < amx.groups) amx_products<1, C>(amx, b_rows, g, tile0);
}

void tile_columns_amx(void* data, size_t task) {  // weight tiles 2 task, 2 task + 1
  const auto& amx = *static_cast<const AmxJob*>(data);
  const MatMulJob& job = *amx.job;
  const int64_t k = job.blocks * kBlock, tile0 = 2 * static_cast<int64_t>(task);
  const int64_t count = std::min<int64_t>(2, job.n / kTile - tile0);
  thread_local std::vector<uint16_t> columns;  // the tiles' dequantized columns, all of K
  columns.resize(2 * k * 16 + 32);
  uint16_t* first = reinterpret_cast<uint16_t*>((reinterpret_cast<uintptr_t>(columns.data()) + 63) & ~uintptr_t{63});
  uint16_t* const b_rows[2] = {first, first + k * 16};
  for (int64_t c = 0; c < count; ++c) {
    const TileRow weights = job.tile_row(tile0 + c);
    for (int64_t b = 0; b < job.blocks; ++b) {
      dequantize_block(weights.codes + b * kTileBytes, weights.scales + b * kTile, weights.zeros + b * kZeroBytes,
                       b_rows[c] + b * 16 * 32);
    }
  }
  configure_tiles();
  if (count == 2) {
    amx_columns<2>(amx, b_rows, tile0);
  } else {
    amx_columns<1>(amx, b_rows, tile0);
  }
  _tile_release();
}

#pragma GCC pop_options

bool amx_usable() {  // the CPU has AMX-BF16 and AVX512-BF16, and Linux lets this process use AMX
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 22)) || !(d & (1u << 24))) return false;
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a & (1u << 5))) return false;
#if defined(__linux__)
  constexpr int kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

Isa best_isa() {
  static const Isa best = [] {
    __builtin_cpu_init();
    unsigned a, b, c, d;
    const bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
    if (!f16c || !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return kGeneric;
    const bool vnni = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512vnni");
    return !vnni ? kAvx2 : amx_usable() ? kAmx : kAvx512Vnni;
  }();
  return best;
}
#else
Isa best_isa() { return kGeneric; }
#endif

// The path for a session made now: the best the CPU has, capped by GEMMA_NB_KERNEL_ISA; -1 for a cap
// that names no path (RegisterCustomOps refuses it before any node is made).
int chosen_isa() {
  const char* cap = std::getenv("GEMMA_NB_KERNEL_ISA");
  if (cap == nullptr || *cap == '\0') return best_isa();
  for (int isa = kExact; isa <= kAmx; ++isa) {
    if (std::strcmp(cap, kIsaNames[isa]) == 0) return std::min(isa, static_cast<int>(best_isa()));
  }
  return -1;
}

// The path a node made now takes.
int node_isa() {
  const int cap = chosen_isa();
  return cap < 0 ? best_isa() : cap;
}

struct QuantizeJob {
  QuantizeBlock quantize;
  const float* a;
  QuantizedRows* out;
  int64_t per_task, total;
};

void quantize_task(void* data, size_t task) {
  const auto& job = *static_cast<const QuantizeJob*>(data);
  const int64_t end = std::min<int64_t>(job.total, (task + 1) * job.per_task);
  for (int64_t i = task * job.per_task; i < end; ++i) job.quantize(job.a, *job.out, i);
}

void quantize_rows(Ort::KernelContext& ctx, QuantizeBlock quantize, const float* a, int64_t blocks,
                   QuantizedRows& out) {
  constexpr int64_t kPerTask = 1024;
  out.q.resize(blocks * kBlock);
  out.scale.resize(blocks);
  out.scaled_sum.resize(blocks);
  QuantizeJob job{quantize, a, &out, kPerTask, blocks};
  if (blocks <= kPerTask) {
    quantize_task(&job, 0);
  } else {
    ctx.ParallelFor(quantize_task, static_cast<size_t>((blocks + kPerTask - 1) / kPerTask), 0, &job);
  }
}

struct TilesJob {  // a path's ParallelFor over the tile rows, per_task tile rows a task
  const MatMulJob* job;
  TileRange range;
  int64_t per_task;
  gemma_nb::GegluRow geglu;  // geglu_task's: gate|up rows in, F outputs
  float* y;                  // geglu_task's output [m][F]
};

void product_task(void* data, size_t task) {
  const auto& t = *static_cast<const TilesJob*>(data);
  const int64_t tile0 = static_cast<int64_t>(task) * t.per_task;
  t.range(*t.job, tile0, std::min(t.per_task, t.job->n / kTile - tile0));
}

// Decode's geglu tasks take this many pairs: with one, a task's own work (its scratch, the GeGLU of
// 16 outputs) made the 2B shape's gate|up op 1.03-1.06x the plain product's time; with 4, the same.
constexpr int64_t kGegluPairs = 4;

// GeGLU on the product (attribute geglu: the weight's tile rows alternate gate and up, 16 outputs
// each, so that a decode step still reads it in one stream): a task computes tile row pairs into a
// scratch block [m][2 width], gate then up, still in cache, and writes their GeGLU to Y: the
// product itself never goes to memory.
void geglu_task(void* data, size_t task) {
  const auto& t = *static_cast<const TilesJob*>(data);
  const MatMulJob& job = *t.job;
  const int64_t pairs = job.n / kTile / 2, pair0 = static_cast<int64_t>(task) * t.per_task;
  const int64_t count = std::min(t.per_task, pairs - pair0), width = count * kTile;
  thread_local std::vector<float> products;  // the worker's, reused across tasks and calls
  products.resize(job.m * 2 * width);
  MatMulJob part = job;
  part.out = products.data(), part.out_stride = 2 * width, part.out_tile0 = 2 * pair0, part.out_pairs = count;
  t.range(part, 2 * pair0, 2 * count);
  for (int64_t r = 0; r < job.m; ++r) {
    const float* gate = products.data() + r * 2 * width;
    t.geglu(gate, gate + width, width, t.y + r * pairs * kTile + pair0 * kTile);
  }
}

// A packed weight: tiles [N/16, K/32, 256], scales [N/16, K/32, 16] (fp16 bits), zeros [N/16, K/32, 8].
struct Weight {
  const uint8_t* tiles = nullptr;
  const uint16_t* scales = nullptr;
  const uint8_t* zeros = nullptr;
  int64_t n_tiles = 0, blocks = 0;
  std::string fault;  // why the three tensors are not one packed weight; empty where they are

  static Weight of(const OrtValue* tiles, const OrtValue* scales, const OrtValue* zeros, const char* op) {
    Weight w{gemma_nb::data_of<uint8_t>(tiles), gemma_nb::data_of<uint16_t>(scales), gemma_nb::data_of<uint8_t>(zeros)};
    const gemma_nb::Dims t = gemma_nb::dims_of(tiles, op);
    w.n_tiles = t.rank == 3 ? t.at[0] : -1, w.blocks = t.rank == 3 ? t.at[1] : -1;
    if (t.rank != 3 || t.at[2] != kTileBytes || gemma_nb::dims_of(scales, op) != gemma_nb::Dims{{w.n_tiles, w.blocks, kTile}, 3} ||
        gemma_nb::dims_of(zeros, op) != gemma_nb::Dims{{w.n_tiles, w.blocks, kZeroBytes}, 3}) {
      w.fault = std::string(op) + ": the weight is not [N/16, K/32, 256] tiles with [N/16, K/32, 16] scales and "
                "[N/16, K/32, 8] zero points";
    }
    return w;
  }
  // The node's inputs first .. first + 2.
  static Weight of(OrtKernelContext* context, size_t first, const char* op) {
    return of(gemma_nb::input_value(context, first), gemma_nb::input_value(context, first + 1),
              gemma_nb::input_value(context, first + 2), op);
  }
  const Weight& checked() const {
    if (!fault.empty()) ORT_CXX_API_THROW(std::string(fault), ORT_INVALID_ARGUMENT);
    return *this;
  }
};

// Tasks of one tile row (or kGegluPairs) go to the pool in this many contiguous batches a core,
// not one claim each: claiming a task from onnxruntime's pool costs about as long as a core takes
// to read one of the 270M's 5.8 KB tile rows in the machine's fast phase. Alternating in one
// process, 270M decode 1.02-1.05x (16 batches on 2 cores), the 2B shape's 1.00-1.01x; 2 batches
// (no balancing between the cores) made the 2B shape's 0.95-0.98x. Cores are the machine's: a
// session on fewer threads gets more batches a thread, still balanced.
constexpr int64_t kBatchesPerCore = 8;

size_t batches_for(int64_t tasks) {
  static const int64_t cores = std::max(1u, std::thread::hardware_concurrency());
  return static_cast<size_t>(std::min(tasks, kBatchesPerCore * cores));
}

struct Product {  // what q4_matmul wrote: y's data, its shape and its rows
  float* data;
  gemma_nb::Dims shape;
  int64_t rows;
};

// Y (output 0, or `given`) = A W^T, or with `geglu` (a null row function: none) Y = geglu(gate, up) of its two halves.
Product q4_matmul(OrtKernelContext* context, int isa, const float* a, const gemma_nb::Dims& a_shape, const Weight& w,
                  gemma_nb::GegluRow geglu, float* given = nullptr) {
  const int64_t blocks = w.blocks, n = w.n_tiles * kTile, k = blocks * kBlock;
  if (a_shape.rank == 0 || a_shape.back() != k) {
    ORT_CXX_API_THROW("Q4MatMul: the input's last dimension is not the weight's K", ORT_INVALID_ARGUMENT);
  }
  if (geglu && w.n_tiles % 2) {
    ORT_CXX_API_THROW("Q4MatMul: geglu needs a weight of tile rows in gate and up pairs (an even number)",
                      ORT_INVALID_ARGUMENT);
  }
  const int64_t m = a_shape.elements() / k;
  gemma_nb::Dims y_shape = a_shape;
  y_shape.at[y_shape.rank - 1] = geglu ? n / 2 : n;
  float* out = given ? given : gemma_nb::output_data<float>(context, 0, y_shape);
  const Product product{out, y_shape, m};
  if (m == 0) return product;
  Ort::KernelContext ctx(context);
  thread_local QuantizedRows x;  // the calling thread's, reused: no allocation per token
  MatMulJob job{a, w.tiles, w.scales, w.zeros, &x, out, m, n, blocks, 0, n, 0, 0};
  std::vector<float> whole;  // the AMX path's product, before its GeGLU
  TileRange range = tiles_generic;
  int64_t per_task = 1;
  QuantizeBlock quantize = quantize_block_generic;  // a row's blocks: O(K), beside the O(N K) product
  if (isa == kExact) range = tiles_exact, quantize = nullptr;
#if defined(__x86_64__)
  const int64_t groups = isa == kAmx ? m / 16 : 0;
  if (groups) {
    if (geglu) whole.resize(m * n), job.out = whole.data(), job.out_pairs = n / kTile / 2;  // gate, then up
    std::vector<uint16_t> a16(groups * 16 * k);
    Bf16Job convert{a, a16.data(), k};
    ctx.ParallelFor(to_bf16_row, static_cast<size_t>(groups * 16), 0, &convert);
    AmxJob amx{&job, a16.data(), groups};
    ctx.ParallelFor(tile_columns_amx, static_cast<size_t>((w.n_tiles + 1) / 2), 0, &amx);
    job.first_row = groups * 16;
  }
  if (isa >= kAvx512Vnni) quantize = quantize_block_vnni<false>, range = tiles_vnni;
  if (isa >= kAvx512Vnni && m - job.first_row >= kPreparedRows) {
    quantize = quantize_block_vnni<true>, range = tiles_prepared, per_task = kPreparedTiles;
  }
  if (isa == kAvx2) range = tiles_avx2;
#endif
  if (quantize && job.first_row < m) {
    quantize_rows(ctx, quantize, a + job.first_row * k, (m - job.first_row) * blocks, x);
  }
  const bool one_by_one = per_task == 1;  // decode, and prompts without AVX-512: see batches_for
  if (geglu && whole.empty()) {  // per_task: pairs of tile rows
    TilesJob tasks{&job, range, one_by_one ? kGegluPairs : per_task, geglu, out};
    const int64_t count = (w.n_tiles / 2 + tasks.per_task - 1) / tasks.per_task;
    ctx.ParallelFor(geglu_task, static_cast<size_t>(count), one_by_one ? batches_for(count) : 0, &tasks);
    return product;
  }
  TilesJob tasks{&job, range, per_task, nullptr, nullptr};
  const int64_t count = (w.n_tiles + per_task - 1) / per_task;
  if (job.first_row < m) ctx.ParallelFor(product_task, static_cast<size_t>(count), one_by_one ? batches_for(count) : 0, &tasks);
  if (geglu) gemma_nb::geglu_on_pool(ctx, geglu, whole.data(), n / 2, m * n / 2, out);
  return product;
}

struct ResidualJob {  // the product's rows, from which sum and Y (in place) are made
  float *rows, *sums;
  const float *residual, *norm, *next_norm;
  int64_t n;
  float epsilon;
};

void residual_row(void* data, size_t row) {
  const auto& job = *static_cast<const ResidualJob*>(data);
  const int64_t at = static_cast<int64_t>(row) * job.n;
  float *y = job.rows + at, *sum = job.sums + at;
  const float* residual = job.residual + at;
  const float r = gemma_nb::inverse_rms(y, job.n, job.epsilon);
  for (int64_t i = 0; i < job.n; ++i) sum[i] = residual[i] + y[i] * r * job.norm[i];
  const float r_sum = gemma_nb::inverse_rms(sum, job.n, job.epsilon);
  for (int64_t i = 0; i < job.n; ++i) y[i] = sum[i] * r_sum * job.next_norm[i];
}

// Q4MatMul and Q4Gather read their inputs through the C API (ort_values.h), not the Lite API.
class Q4MatMulKernel {  // one per graph node: its path is fixed when the session is made
 public:
  Q4MatMulKernel(const OrtApi& api, const OrtKernelInfo* info) : isa_(node_isa()) {
    if (OrtStatus* absent = api.KernelInfoGetAttribute_float(info, "norm_epsilon", &norm_epsilon_)) {
      api.ReleaseStatus(absent);
      norm_epsilon_ = -1.f;
    }
    int64_t geglu_attribute = 0;
    if (OrtStatus* absent = api.KernelInfoGetAttribute_int64(info, "geglu", &geglu_attribute)) api.ReleaseStatus(absent);
    if (geglu_attribute) geglu_ = gemma_nb::session_geglu_row();
    const OrtValue *tiles = gemma_nb::constant_input(api, info, 1), *scales = gemma_nb::constant_input(api, info, 2),
                   *zeros = gemma_nb::constant_input(api, info, 3);
    if (tiles && scales && zeros) constant_weight_ = Weight::of(tiles, scales, zeros, "Q4MatMul");
    for (int i = 0; i < 2; ++i) {
      if (const OrtValue* norm = gemma_nb::constant_input(api, info, i ? 6 : 4)) {
        constant_norms_[i] = Norm{gemma_nb::data_of<float>(norm), gemma_nb::dims_of(norm, "Q4MatMul")};
      }
    }
  }

  void Compute(OrtKernelContext* context) {
    const OrtValue* a = gemma_nb::input_value(context, 0);
    const OrtValue *norm = gemma_nb::input_value(context, 4), *residual = gemma_nb::input_value(context, 5),
                   *next_norm = gemma_nb::input_value(context, 6);
    size_t outputs = 0;
    Ort::ThrowOnError(Ort::GetApi().KernelContext_GetOutputCount(context, &outputs));
    const bool fused = norm != nullptr;
    if ((residual != nullptr) != fused || (next_norm != nullptr) != fused || (outputs > 1) != fused) {
      ORT_CXX_API_THROW("Q4MatMul: norm, residual and next_norm come together, with the output sum", ORT_INVALID_ARGUMENT);
    }
    if (fused && norm_epsilon_ < 0.f) ORT_CXX_API_THROW("Q4MatMul: norm needs the attribute norm_epsilon", ORT_INVALID_ARGUMENT);
    if (fused && geglu_) ORT_CXX_API_THROW("Q4MatMul: geglu and the residual inputs do not go together", ORT_INVALID_ARGUMENT);
    Weight this_run;
    const Weight& weight = constant_weight_ ? *constant_weight_ : (this_run = Weight::of(context, 1, "Q4MatMul"));
    // checks a's shape against the weight's
    const Product product = q4_matmul(context, isa_, gemma_nb::data_of<float>(a), gemma_nb::dims_of(a, "Q4MatMul"),
                                      weight.checked(), geglu_);
    if (!fused) return;
    const int64_t n = product.shape.back();
    const Norm norms[2] = {norm_of(norm, 0), norm_of(next_norm, 1)};
    if (norms[0].dims != gemma_nb::Dims{{n}, 1} || norms[1].dims != gemma_nb::Dims{{n}, 1}) {
      ORT_CXX_API_THROW("Q4MatMul: norm and next_norm must each hold one value for each of the weight's " +
                        std::to_string(n) + " outputs", ORT_INVALID_ARGUMENT);
    }
    if (gemma_nb::dims_of(residual, "Q4MatMul") != product.shape) {
      ORT_CXX_API_THROW("Q4MatMul: residual must have the output's shape", ORT_INVALID_ARGUMENT);
    }
    gemma_nb::add_residual(context, product.data, gemma_nb::output_data<float>(context, 1, product.shape),
                           gemma_nb::data_of<float>(residual), norms[0].data, norms[1].data, n, product.rows, norm_epsilon_);
  }

 private:
  struct Norm {
    const float* data = nullptr;
    gemma_nb::Dims dims;
  };
  Norm norm_of(const OrtValue* value, int i) const {  // norm (0) or next_norm (1)
    return constant_norms_[i] ? *constant_norms_[i] : Norm{gemma_nb::data_of<float>(value), gemma_nb::dims_of(value, "Q4MatMul")};
  }

  int isa_;
  float norm_epsilon_;                  // -1 where the node has no such attribute
  gemma_nb::GegluRow geglu_ = nullptr;  // with the attribute geglu = 1: Y is GeGLU of the product's halves
  // Inputs that are constant initializers (as in every exported graph) are read once, as the
  // session makes the node, and a fault in them reported by every run, as for the others.
  std::optional<Weight> constant_weight_;
  std::optional<Norm> constant_norms_[2];
};

// Q4MatMul(A, tiles, scales, zeros, norm?, residual?, next_norm?) -> Y, sum? (the header)
struct Q4MatMulOp : Ort::CustomOpBase<Q4MatMulOp, Q4MatMulKernel> {
  void* CreateKernel(const OrtApi& api, const OrtKernelInfo* info) const { return new Q4MatMulKernel(api, info); }
  const char* GetName() const { return "Q4MatMul"; }
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }
  size_t GetInputTypeCount() const { return 7; }
  ONNXTensorElementDataType GetInputType(size_t i) const {
    return i == 1 || i == 3 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 : i == 2 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16
                                                                     : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t i) const {
    return i >= 4 ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
  }
  size_t GetOutputTypeCount() const { return 2; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
  OrtCustomOpInputOutputCharacteristic GetOutputCharacteristic(size_t i) const {
    return i == 1 ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
  }
};

struct Q4GatherKernel {
  Q4GatherKernel(const OrtApi&, const OrtKernelInfo*) {}
  void Compute(OrtKernelContext* context) {
    const Weight w = Weight::of(context, 0, "Q4Gather").checked();
    const OrtValue* ids_value = gemma_nb::input_value(context, 3);
    const int64_t* ids = gemma_nb::data_of<int64_t>(ids_value);
    const int64_t blocks = w.blocks, k = blocks * kBlock, rows = w.n_tiles * kTile;
    gemma_nb::Dims y_shape = gemma_nb::dims_of(ids_value, "Q4Gather");
    const int64_t count = y_shape.elements();
    if (y_shape.rank == gemma_nb::Dims::kMaxRank) ORT_CXX_API_THROW("Q4Gather: ids have too many dimensions", ORT_INVALID_ARGUMENT);
    y_shape.at[y_shape.rank++] = k;
    for (int64_t i = 0; i < count; ++i) {  // before any output: a bad id fails the run cleanly
      if (ids[i] < 0 || ids[i] >= rows) {
        ORT_CXX_API_THROW("Q4Gather: token id " + std::to_string(ids[i]) + " is outside 0.." + std::to_string(rows - 1),
                          ORT_INVALID_ARGUMENT);
      }
    }
    float* out = gemma_nb::output_data<float>(context, 0, y_shape);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t tile = ids[i] / kTile, r = ids[i] % kTile;
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t at = tile * blocks + b;
        const uint8_t* codes = w.tiles + at * kTileBytes;
        const float s = half_to_float(w.scales[at * kTile + r]), m = tile_min(s, w.zeros + at * kZeroBytes, static_cast<int>(r));
        float* o = out + i * k + b * kBlock;
        for (int c = 0; c < kBlock; ++c) o[c] = s * tile_code(codes, static_cast<int>(r), c) + m;
      }
    }
  }
};

// Q4Gather(tiles, scales, zeros, ids) -> rows (the header)
struct Q4GatherOp : Ort::CustomOpBase<Q4GatherOp, Q4GatherKernel> {
  void* CreateKernel(const OrtApi& api, const OrtKernelInfo* info) const { return new Q4GatherKernel(api, info); }
  const char* GetName() const { return "Q4Gather"; }
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }
  size_t GetInputTypeCount() const { return 4; }
  ONNXTensorElementDataType GetInputType(size_t i) const {
    return i == 1 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 : i == 3 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64
                                                                   : ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
  }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

struct GemmaNbDomain {  // made once per process; every session that registers the library adds it
  Ort::CustomOpDomain domain{"gemma_nb"};
  Q4MatMulOp matmul;
  Q4GatherOp gather;
  std::unique_ptr<Ort::Custom::OrtLiteCustomOp> geglu{
      Ort::Custom::CreateLiteCustomOp<gemma_nb::GegluKernel>("GeGLU", "CPUExecutionProvider")};
  gemma_nb::AttentionOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT> attention;
  gemma_nb::AttentionOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16> attention_half_cache;
  gemma_nb::DecoderLayerOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT> layer;
  gemma_nb::DecoderLayerOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16> layer_half_cache;
  GemmaNbDomain() {
    domain.Add(&matmul);
    domain.Add(&gather);
    domain.Add(geglu.get());
    domain.Add(&attention);
    domain.Add(&attention_half_cache);
    domain.Add(&layer);
    domain.Add(&layer_half_cache);
  }
};

}  // namespace

struct gemma_nb::Q4Projection::Weight : ::Weight {};

gemma_nb::Q4Projection::Q4Projection(const OrtApi& api, const OrtKernelInfo* info, size_t first, bool geglu, const char* op)
    : isa_(node_isa()), geglu_(geglu ? session_geglu_row() : nullptr) {
  const OrtValue *tiles = constant_input(api, info, first), *scales = constant_input(api, info, first + 1),
                 *zeros = constant_input(api, info, first + 2);
  if (!tiles || !scales || !zeros) ORT_CXX_API_THROW(std::string(op) + ": the weights must be constant initializers", ORT_INVALID_ARGUMENT);
  weight_ = std::make_unique<const Weight>(Weight{::Weight::of(tiles, scales, zeros, op)});
  weight_->checked();
  if (geglu && weight_->n_tiles % 2) {
    ORT_CXX_API_THROW(std::string(op) + ": a gate|up weight needs its tile rows in pairs (an even number)", ORT_INVALID_ARGUMENT);
  }
}

gemma_nb::Q4Projection::~Q4Projection() = default;

int64_t gemma_nb::Q4Projection::outputs() const { return weight_->n_tiles * kTile / (geglu_ ? 2 : 1); }

void gemma_nb::Q4Projection::Multiply(OrtKernelContext* context, const float* a, const Dims& a_dims, float* out) const {
  q4_matmul(context, isa_, a, a_dims, *weight_, geglu_, out);
}

void gemma_nb::add_residual(OrtKernelContext* context, float* y, float* sum, const float* residual, const float* norm,
                            const float* next_norm, int64_t n, int64_t rows, float epsilon) {
  ResidualJob job{y, sum, residual, norm, next_norm, n, epsilon};
  if (rows < 16) {  // a decode step: one row, cheaper than waking the pool
    for (int64_t r = 0; r < rows; ++r) residual_row(&job, static_cast<size_t>(r));
  } else {
    Ort::KernelContext(context).ParallelFor(residual_row, static_cast<size_t>(rows), 0, &job);
  }
}

int gemma_nb::session_vector_width() {
  const int isa = chosen_isa();
  return isa >= kAvx512Vnni ? 16 : isa >= kAvx2 ? 8 : 0;
}

// The path Q4MatMul takes in a session made now (exact, generic, avx2, avx512-vnni or amx), or nullptr when
// GEMMA_NB_KERNEL_ISA names none.
extern "C" const char* GemmaNbKernelIsa() {
  const int isa = chosen_isa();
  return isa < 0 ? nullptr : kIsaNames[isa];
}

extern "C" OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  Ort::InitApi(api_base->GetApi(ORT_API_VERSION));
  if (chosen_isa() < 0) {  // refused here, once, rather than by every node
    return Ort::GetApi().CreateStatus(ORT_INVALID_ARGUMENT,
                                      "GEMMA_NB_KERNEL_ISA must be exact, generic, avx2, avx512-vnni or amx");
  }
  static GemmaNbDomain gemma_nb;
  Ort::UnownedSessionOptions(options).Add(gemma_nb.domain);
  return nullptr;
}
