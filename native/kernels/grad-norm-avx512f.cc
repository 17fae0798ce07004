// AVX-512F gradient-norm kernel: 8 doubles per vector, the 16 partial sums in 2 vectors. Compiled
// with -mavx512f only (no FMA contraction: -ffp-contract=off).
#include <immintrin.h>

#include "grad-norm-loop.h"

// GCC 12's _mm512_cvtps_pd passes _mm512_undefined_pd() as the unused merge source and then warns
// that it is (or may be) uninitialized (GCC bug 105593, fixed in GCC 13). Nothing reads it.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace simd_adamw {
namespace {

struct Avx512fNormLanes {
  static constexpr size_t kWidth = 8;
  static constexpr size_t kBlocksAtOnce = 4;
  using V = __m512d;

  static V zero() { return _mm512_setzero_pd(); }
  static V loadWiden(const float* p) { return _mm512_cvtps_pd(_mm256_loadu_ps(p)); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static void store(double* p, V v) { _mm512_storeu_pd(p, v); }
};

}  // namespace

void sumSquaresAvx512f(const float* data, size_t length, double* sums) {
  sumSquaresBlocks<Avx512fNormLanes>(data, length, sums);
}

}  // namespace simd_adamw
