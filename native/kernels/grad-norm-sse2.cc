// SSE2 gradient-norm kernel: 2 doubles per vector, the 16 partial sums in 8 vectors.
#include <emmintrin.h>

#include "grad-norm-loop.h"

namespace simd_adamw {
namespace {

struct Sse2NormLanes {
  static constexpr size_t kWidth = 2;
  static constexpr size_t kBlocksAtOnce = 1;
  using V = __m128d;

  static V zero() { return _mm_setzero_pd(); }
  // Two floats (8 bytes) through an integer load, whose pointer type may alias floats.
  static V loadWiden(const float* p) {
    return _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  static V add(V a, V b) { return _mm_add_pd(a, b); }
  static V mul(V a, V b) { return _mm_mul_pd(a, b); }
  static void store(double* p, V v) { _mm_storeu_pd(p, v); }
};

}  // namespace

void sumSquaresSse2(const float* data, size_t length, double* sums) {
  sumSquaresBlocks<Sse2NormLanes>(data, length, sums);
}

}  // namespace simd_adamw
