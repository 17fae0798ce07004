// AVX2 vector layer: 8 floats or 4 doubles per vector. Compiled with -mavx2 only (no -mfma: a fused
// multiply-add would round differently from the other layers). Dispatch uses it only when the CPU
// and the OS support AVX state. Partial vectors use AVX's masked load/store. The contract every
// layer meets is in native/simd/scalar.h.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "buffered-lanes.h"
#include "canonical-nan.h"

namespace simd_adamw {
namespace {

struct F32Core {
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
  static bool anyNan(V a) { return _mm256_movemask_ps(_mm256_cmp_ps(a, a, _CMP_UNORD_Q)) != 0; }
  static V canonicalizeNan(V a) {
    const V nan = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(kCanonicalNanBits)));
    return _mm256_blendv_ps(a, nan, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
  }
  // Lanes where `test` is NaN take `ifNan`, the others `otherwise`.
  static V selectWhereNan(V test, V ifNan, V otherwise) {
    return _mm256_blendv_ps(otherwise, ifNan, _mm256_cmp_ps(test, test, _CMP_UNORD_Q));
  }
};

struct F32 : BufferedLanes<F32Core> {};

struct F64 {
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
}  // namespace simd_adamw
