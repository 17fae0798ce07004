// AVX2 gradient-norm kernel: 4 doubles per vector, the 16 partial sums in 4 vectors. Compiled with
// -mavx2 only (no -mfma: a fused square-and-add would round differently from the other paths).
#include <immintrin.h>

#include "grad-norm-loop.h"

namespace simd_adamw {
namespace {

struct Avx2NormLanes {
  static constexpr size_t kWidth = 4;
  static constexpr size_t kBlocksAtOnce = 2;
  using V = __m256d;

  static V zero() { return _mm256_setzero_pd(); }
  static V loadWiden(const float* p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static void store(double* p, V v) { _mm256_storeu_pd(p, v); }
};

}  // namespace

void sumSquaresAvx2(const float* data, size_t length, double* sums) {
  sumSquaresBlocks<Avx2NormLanes>(data, length, sums);
}

}  // namespace simd_adamw
