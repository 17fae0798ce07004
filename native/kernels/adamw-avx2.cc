// AVX2 AdamW kernel: 8 floats per vector. Compiled with -mavx2 only (no -mfma: the update must not
// be fused, to stay bitwise equal to the other paths). Dispatch calls it only when the CPU and the
// OS support AVX state. The tail uses AVX's masked load/store.
#include <immintrin.h>

#include "adamw-loop.h"

namespace simd_adamw {
namespace {

struct Avx2Lanes {
  static constexpr size_t kWidth = 8;
  using V = __m256;

  // Lane i is active when i < n: compare the lane indices against n.
  static __m256i firstLanes(size_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }

  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V loadPartial(const float* p, size_t n) { return _mm256_maskload_ps(p, firstLanes(n)); }
  static void storePartial(float* p, V v, size_t n) { _mm256_maskstore_ps(p, firstLanes(n), v); }

  static V set1(float x) { return _mm256_set1_ps(x); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V sqrt(V a) { return _mm256_sqrt_ps(a); }
  static V neg(V a) { return _mm256_xor_ps(a, _mm256_set1_ps(-0.0f)); }
  // vmaxps returns its second operand when either is NaN; a NaN in `a` is put back by a blend.
  static V nanMax(V a, V b) {
    return _mm256_blendv_ps(_mm256_max_ps(a, b), a, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
  }
  static V canonicalizeNan(V a) {
    const V nan = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(kCanonicalNanBits)));
    return _mm256_blendv_ps(a, nan, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
  }
};

}  // namespace

void adamwAvx2(const AdamwTensor& t, const AdamwScalars& s, uint32_t flags, size_t begin,
               size_t end) {
  adamwKernel<Avx2Lanes>(t, s, flags, begin, end);
}

}  // namespace simd_adamw
