// The int8 ceiling of this CPU's AVX-512 VNNI units, beside which the prefill of `--dtype
// int4-cpu` is judged where there is no AMX (docs/performance.md): how many VPDPBUSD (64 int8
// multiply-adds each) and FMA instructions one core retires a second, alone and mixed, on
// independent accumulators. Run one copy per core at once to see whether the cores share units.
//
//     g++ -O2 benchmarks/int8_peak.cc -o /tmp/int8_peak && (/tmp/int8_peak & /tmp/int8_peak & wait)
#pragma GCC target("avx512f,avx512bw,avx512vnni,fma")  // lambdas included
#include <immintrin.h>

#include <chrono>
#include <cstdio>

namespace {

constexpr int kChains = 12;  // independent accumulators: enough to hide each instruction's latency
constexpr long kIterations = 200000000;

template <typename Step>
double billions_per_second(Step step) {
  const auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < kIterations; ++i) step();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return kIterations * kChains / seconds / 1e9;
}

}  // namespace

int main() {
  __m512i dots[kChains];
  __m512 sums[kChains];
  for (int j = 0; j < kChains; ++j) dots[j] = _mm512_set1_epi32(j), sums[j] = _mm512_set1_ps(j);
  __m512i codes = _mm512_set1_epi8(3), activations = _mm512_set1_epi8(5);
  __m512 factor = _mm512_set1_ps(1.0001f);
  const double vnni = billions_per_second([&] {
#pragma GCC unroll 12
    for (int j = 0; j < kChains; ++j) dots[j] = _mm512_dpbusd_epi32(dots[j], codes, activations);
    asm volatile("" : "+v"(codes));  // keeps the loop from being folded away
  });
  const double fma = billions_per_second([&] {
#pragma GCC unroll 12
    for (int j = 0; j < kChains; ++j) sums[j] = _mm512_fmadd_ps(sums[j], factor, factor);
    asm volatile("" : "+v"(factor));
  });
  const double mixed = billions_per_second([&] {
#pragma GCC unroll 6
    for (int j = 0; j < kChains / 2; ++j) {
      dots[j] = _mm512_dpbusd_epi32(dots[j], codes, activations);
      sums[j] = _mm512_fmadd_ps(sums[j], factor, factor);
    }
    asm volatile("" : "+v"(codes), "+v"(factor));
  });
  int sink = 0;
  for (int j = 0; j < kChains; ++j) sink += _mm512_reduce_add_epi32(dots[j]) + static_cast<int>(_mm512_reduce_add_ps(sums[j]));
  std::printf("one core: %.2f G VPDPBUSD/s (%.0f GOPS int8), %.2f G FMA/s, %.2f G/s half and half (checksum %d)\n",
              vnni, vnni * 64 * 2, fma, mixed, sink);  // printing the results keeps the loops
}
