// SSE2 vector layer: 4 floats or 2 doubles per vector. SSE2 is part of x86-64, so this layer runs
// on every 64-bit x86 CPU. Partial vectors go through a zero-padded buffer: SSE2 has no masked
// load. The contract every layer meets is in native/simd/scalar.h.
#pragma once

#include <emmintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "buffered-lanes.h"
#include "canonical-nan.h"

namespace simd_adamw {
namespace {

struct F32Core {
  static constexpr size_t kWidth = 4;
  using V = __m128;

  static V load(const float* p) { return _mm_loadu_ps(p); }
  static void store(float* p, V v) { _mm_storeu_ps(p, v); }
  static V loadPartial(const float* p, size_t n) {
    float buffer[kWidth] = {0.0f, 0.0f, 0.0f, 0.0f};
    std::memcpy(buffer, p, n * sizeof(float));
    return _mm_loadu_ps(buffer);
  }
  static void storePartial(float* p, V v, size_t n) {
    float buffer[kWidth];
    _mm_storeu_ps(buffer, v);
    std::memcpy(p, buffer, n * sizeof(float));
  }

  static V set1(float x) { return _mm_set1_ps(x); }
  static V add(V a, V b) { return _mm_add_ps(a, b); }
  static V mul(V a, V b) { return _mm_mul_ps(a, b); }
  static V div(V a, V b) { return _mm_div_ps(a, b); }
  static V sqrt(V a) { return _mm_sqrt_ps(a); }
  static V neg(V a) { return _mm_xor_ps(a, _mm_set1_ps(-0.0f)); }
  // maxps returns its second operand when either is NaN, so NaN in b already wins; NaN in a is
  // restored with a select on (a unordered with itself).
  static V nanMax(V a, V b) {
    const V max = _mm_max_ps(a, b);
    const V aIsNan = _mm_cmpunord_ps(a, a);
    return _mm_or_ps(_mm_and_ps(aIsNan, a), _mm_andnot_ps(aIsNan, max));
  }
  static bool anyNan(V a) { return _mm_movemask_ps(_mm_cmpunord_ps(a, a)) != 0; }
  static V canonicalizeNan(V a) {
    const V isNan = _mm_cmpunord_ps(a, a);
    const V nan = _mm_castsi128_ps(_mm_set1_epi32(static_cast<int>(kCanonicalNanBits)));
    return _mm_or_ps(_mm_and_ps(isNan, nan), _mm_andnot_ps(isNan, a));
  }
  // Lanes where `test` is NaN take `ifNan`, the others `otherwise`.
  static V selectWhereNan(V test, V ifNan, V otherwise) {
    const V isNan = _mm_cmpunord_ps(test, test);
    return _mm_or_ps(_mm_and_ps(isNan, ifNan), _mm_andnot_ps(isNan, otherwise));
  }
};

struct F32 : BufferedLanes<F32Core> {};

struct F64 {
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
}  // namespace simd_adamw
