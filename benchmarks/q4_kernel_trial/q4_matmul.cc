// Trial for issue #4 (not shipped): a 4-bit MatMul and Gather that onnxruntime never repacks.
//
// MatMulNBits makes MLAS copy every weight into its own packed layout at load (seconds of CPU,
// a second copy in memory). These ops read the weights straight from the mapped file, in a
// layout made for AVX-512 VNNI: a weight [N, K] is cut into tiles of 16 rows (n) by one block
// of 32 columns (k), 256 bytes each, tiles[N/16][K/32][256], where for L = 0..3, r = 0..15 and
// j = 0..3 byte L*64 + 4r + j holds code q[r][8L + j] in its low nibble and q[r][8L + 4 + j] in
// its high one. One 64-byte load, masked or shifted, then gives 16 rows x 4 columns of codes,
// which `vpdpbusd` multiplies with 4 int8 activations broadcast to all rows. Per tile row and
// block: an fp16 scale and an fp16 minimum, scales[N/16][K/32][16] and mins alike, so a weight
// is scale * q + min (5 bits a weight in all).
//
// Decode (and any rows left over below): activations quantized to int8 per block of 32 (scale
// absmax / 127), like MatMulNBits at accuracy level 4, so that
// sum_k w x = sum_blocks sx * (scale * dot(q, xq) + min * sum(xq)), with `vpdpbusd`.
// Prompts, 16 rows at a time: AMX in bf16 (see tile_columns_amx).
//
// Ops (domain gemma_nb.trial): Q4MatMul(A float [..., K], tiles, scales, mins) -> [..., N];
// Q4Gather(tiles, scales, mins, ids int64 [...]) -> [..., K] (the tied embedding's rows).
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT
#include "onnxruntime_lite_custom_op.h"

namespace {

constexpr int64_t kBlock = 32, kTile = 16, kTileBytes = 256;
constexpr int kRows = 8;  // activation rows that share one unpacking of a tile's codes
// Decode streams the codes once; asking for them this far ahead keeps enough reads in flight for
// 2 cores to reach the read bandwidth (4-8 KB: 1.4-1.5x the decode speed without, 2B shape).
constexpr int64_t kPrefetchBytes = 4096;

struct QuantizedRows {
  std::vector<int8_t> q;
  std::vector<float> scale;       // per block: sx
  std::vector<float> scaled_sum;  // per block: sx * sum(xq)
};

void quantize_block(const float* a, QuantizedRows& out, int64_t i) {
  const float* x = a + i * kBlock;
  const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
  const __m512 inv = _mm512_set1_ps(amax > 0 ? 127.f / amax : 0.f);
  const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, inv));
  const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, inv));
  int8_t* q = out.q.data() + i * kBlock;
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtsepi32_epi8(q0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16), _mm512_cvtsepi32_epi8(q1));
  out.scale[i] = amax / 127.f;
  out.scaled_sum[i] = out.scale[i] * _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
}

struct QuantizeJob {
  const float* a;
  QuantizedRows* out;
  int64_t per_task, total;
};

void quantize_task(void* data, size_t task) {
  const auto& job = *static_cast<const QuantizeJob*>(data);
  const int64_t end = std::min<int64_t>(job.total, (task + 1) * job.per_task);
  for (int64_t i = task * job.per_task; i < end; ++i) quantize_block(job.a, *job.out, i);
}

void quantize_rows(Ort::KernelContext& ctx, const float* a, int64_t blocks, QuantizedRows& out) {
  constexpr int64_t kPerTask = 1024;
  out.q.resize(blocks * kBlock);
  out.scale.resize(blocks);
  out.scaled_sum.resize(blocks);
  QuantizeJob job{a, &out, kPerTask, blocks};
  if (blocks <= kPerTask) {
    quantize_task(&job, 0);
  } else {
    ctx.ParallelFor(quantize_task, static_cast<size_t>((blocks + kPerTask - 1) / kPerTask), 0, &job);
  }
}

struct MatMulJob {
  const uint8_t* tiles;
  const uint16_t* scales;
  const uint16_t* mins;
  const QuantizedRows* x;  // rows first_row .. m - 1, quantized
  float* out;
  int64_t m, n, blocks;
  int64_t first_row;  // rows before it were done on AMX
};

// Rows row0 .. row0 + R - 1 of the output, in the 16 columns of one tile row.
template <int R>
void tile_rows(const MatMulJob& job, int64_t tile, int64_t row0) {
  const uint8_t* w = job.tiles + tile * job.blocks * kTileBytes;
  const uint16_t* sc = job.scales + tile * job.blocks * kTile;
  const uint16_t* mn = job.mins + tile * job.blocks * kTile;
  const QuantizedRows& x = *job.x;
  const __m512i low_nibbles = _mm512_set1_epi8(0x0F);
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < job.blocks; ++b) {
    __m512i codes[8];  // codes[t]: 16 rows x columns 4t .. 4t + 3
    for (int L = 0; L < 4; ++L) {
      _mm_prefetch(reinterpret_cast<const char*>(w + b * kTileBytes + kPrefetchBytes + L * 64), _MM_HINT_T0);
    }
    for (int L = 0; L < 4; ++L) {
      const __m512i v = _mm512_loadu_si512(w + b * kTileBytes + L * 64);
      codes[2 * L] = _mm512_and_si512(v, low_nibbles);
      codes[2 * L + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low_nibbles);
    }
    const __m512 scale = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sc + b * kTile)));
    const __m512 min = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(mn + b * kTile)));
    for (int r = 0; r < R; ++r) {
      const int64_t xb = (row0 + r - job.first_row) * job.blocks + b;
      const int32_t* xq = reinterpret_cast<const int32_t*>(x.q.data() + xb * kBlock);
      __m512i dot = _mm512_setzero_si512();
      for (int t = 0; t < 8; ++t) dot = _mm512_dpbusd_epi32(dot, codes[t], _mm512_set1_epi32(xq[t]));
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(scale, _mm512_set1_ps(x.scale[xb])), acc[r]);
      acc[r] = _mm512_fmadd_ps(min, _mm512_set1_ps(x.scaled_sum[xb]), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(job.out + (row0 + r) * job.n + tile * kTile, acc[r]);
}

// Prompt rows (16 at a time) on AMX in bf16: a tile's 16 columns are dequantized once, for all
// of K, into the layout TDPBF16PS takes (K/2 rows of 16 columns x 2 consecutive k), then every
// group of 16 activation rows runs K/32 tile products into one fp32 accumulator tile, with no
// per-block work left: the scales are in the bf16 weights. The dequantized columns are reused by
// all row groups, so their cost shrinks as the prompt grows.
bool amx_allowed() {
  constexpr int kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  static const bool allowed = syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  return allowed;
}

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t bytes_per_row[16] = {};
  uint8_t rows[16] = {};
};

void configure_tiles() {  // tmm0: C, 16 x 16 fp32; tmm1: A, 16 x 32 bf16; tmm2: B, 16 x (16 x 2) bf16
  TileConfig config;
  for (int t = 0; t < 3; ++t) config.bytes_per_row[t] = 64, config.rows[t] = 16;
  _tile_loadconfig(&config);
}

// B rows for one block of one tile: 16 rows of 64 bytes (row i: columns 0..15, k = 2i, 2i + 1).
void dequantize_block(const uint8_t* codes, const uint16_t* sc, const uint16_t* mn, uint16_t* rows) {
  const __m512 scale = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sc)));
  const __m512 min = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(mn)));
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

void tile_columns_amx(void* data, size_t tile) {
  const auto& amx = *static_cast<const AmxJob*>(data);
  const MatMulJob& job = *amx.job;
  const int64_t k = job.blocks * kBlock;
  thread_local std::vector<uint16_t> columns;  // this tile's dequantized columns, all of K
  columns.resize(k * 16 + 32);
  uint16_t* b_rows = reinterpret_cast<uint16_t*>((reinterpret_cast<uintptr_t>(columns.data()) + 63) & ~uintptr_t{63});
  for (int64_t b = 0; b < job.blocks; ++b) {
    const int64_t at = tile * job.blocks + b;
    dequantize_block(job.tiles + at * kTileBytes, job.scales + at * kTile, job.mins + at * kTile,
                     b_rows + b * 16 * 32);
  }
  configure_tiles();
  for (int64_t g = 0; g < amx.groups; ++g) {
    _tile_zero(0);
    for (int64_t b = 0; b < job.blocks; ++b) {
      _tile_loadd(1, amx.a + g * 16 * k + b * kBlock, k * 2);
      _tile_loadd(2, b_rows + b * 16 * 32, 64);
      _tile_dpbf16ps(0, 1, 2);
    }
    _tile_stored(0, job.out + g * 16 * job.n + tile * kTile, job.n * 4);
  }
  _tile_release();
}

void matmul_tile(void* data, size_t tile) {  // rows from job.first_row on
  const auto& job = *static_cast<const MatMulJob*>(data);
  int64_t r = job.first_row;
  for (; r + kRows <= job.m; r += kRows) tile_rows<kRows>(job, tile, r);
  for (; r < job.m; ++r) tile_rows<1>(job, tile, r);
}

const uint16_t* half_bits(const Ort::Custom::Tensor<Ort::Float16_t>& t) {
  return reinterpret_cast<const uint16_t*>(t.Data());
}

void Q4MatMul(OrtKernelContext* context, const Ort::Custom::Tensor<float>& a,
              const Ort::Custom::Tensor<uint8_t>& tiles, const Ort::Custom::Tensor<Ort::Float16_t>& scales,
              const Ort::Custom::Tensor<Ort::Float16_t>& mins, Ort::Custom::Tensor<float>& y) {
  const std::vector<int64_t> a_shape = a.Shape(), w_shape = tiles.Shape();  // w: [N/16, K/32, 256]
  const int64_t blocks = w_shape[1], n = w_shape[0] * kTile;
  if (a_shape.back() != blocks * kBlock) ORT_CXX_API_THROW("Q4MatMul: K does not match", ORT_INVALID_ARGUMENT);
  const int64_t m = a.NumberOfElement() / a_shape.back();
  std::vector<int64_t> y_shape = a_shape;
  y_shape.back() = n;
  float* out = y.Allocate(y_shape);
  Ort::KernelContext ctx(context);
  const int64_t groups = m >= 16 && amx_allowed() ? m / 16 : 0;
  QuantizedRows x;
  MatMulJob job{tiles.Data(), half_bits(scales), half_bits(mins), &x, out, m, n, blocks, groups * 16};
  if (groups) {
    std::vector<uint16_t> a16(groups * 16 * a_shape.back());
    Bf16Job convert{a.Data(), a16.data(), a_shape.back()};
    ctx.ParallelFor(to_bf16_row, static_cast<size_t>(groups * 16), 0, &convert);
    AmxJob amx{&job, a16.data(), groups};
    ctx.ParallelFor(tile_columns_amx, static_cast<size_t>(w_shape[0]), 0, &amx);
  }
  if (job.first_row < m) {
    quantize_rows(ctx, a.Data() + job.first_row * a_shape.back(), (m - job.first_row) * blocks, x);
    ctx.ParallelFor(matmul_tile, static_cast<size_t>(w_shape[0]), 0, &job);
  }
}

void Q4Gather(const Ort::Custom::Tensor<uint8_t>& tiles, const Ort::Custom::Tensor<Ort::Float16_t>& scales,
              const Ort::Custom::Tensor<Ort::Float16_t>& mins, const Ort::Custom::Tensor<int64_t>& ids,
              Ort::Custom::Tensor<float>& y) {
  const std::vector<int64_t> w_shape = tiles.Shape();
  const int64_t blocks = w_shape[1], k = blocks * kBlock, rows = w_shape[0] * kTile;
  std::vector<int64_t> y_shape = ids.Shape();
  y_shape.push_back(k);
  float* out = y.Allocate(y_shape);
  const uint16_t *sc = half_bits(scales), *mn = half_bits(mins);
  for (int64_t i = 0; i < ids.NumberOfElement(); ++i) {
    const int64_t id = ids.Data()[i];
    if (id < 0 || id >= rows) ORT_CXX_API_THROW("Q4Gather: token id out of range", ORT_INVALID_ARGUMENT);
    const int64_t tile = id / kTile, r = id % kTile;
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t at = tile * blocks + b;
      const uint8_t* codes = tiles.Data() + at * kTileBytes;
      const float s = _cvtsh_ss(sc[at * kTile + r]), m = _cvtsh_ss(mn[at * kTile + r]);
      float* o = out + i * k + b * kBlock;
      for (int L = 0; L < 4; ++L) {
        for (int j = 0; j < 4; ++j) {
          const uint8_t byte = codes[L * 64 + 4 * r + j];
          o[8 * L + j] = s * (byte & 15) + m;
          o[8 * L + 4 + j] = s * (byte >> 4) + m;
        }
      }
    }
  }
}

}  // namespace

struct TrialDomain {  // made once per process; every session that registers the library adds it
  Ort::CustomOpDomain domain{"gemma_nb.trial"};
  std::unique_ptr<Ort::Custom::OrtLiteCustomOp> matmul{
      Ort::Custom::CreateLiteCustomOp("Q4MatMul", "CPUExecutionProvider", Q4MatMul)};
  std::unique_ptr<Ort::Custom::OrtLiteCustomOp> gather{
      Ort::Custom::CreateLiteCustomOp("Q4Gather", "CPUExecutionProvider", Q4Gather)};
  TrialDomain() {
    domain.Add(matmul.get());
    domain.Add(gather.get());
  }
};

extern "C" OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  Ort::InitApi(api_base->GetApi(ORT_API_VERSION));
  static TrialDomain trial;
  Ort::UnownedSessionOptions(options).Add(trial.domain);
  return nullptr;
}
