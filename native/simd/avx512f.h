// AVX-512F vector layer: 16 floats or 8 doubles per vector. Compiled with -mavx512f only (no FMA
// contraction: -ffp-contract=off). Dispatch uses it only when the CPU has AVX-512F and the OS saves
// ZMM state. Partial vectors use mask registers, which also suppress faults on the lanes past the
// end. The contract every layer meets is in native/simd/scalar.h.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "buffered-lanes.h"
#include "canonical-nan.h"

// GCC 12's _mm512_sqrt_ps/_mm512_max_ps/_mm512_cvtps_pd pass _mm512_undefined_*() as the unused
// merge source and then warn that it may be uninitialized (GCC bug 105593, fixed in GCC 13).
// Nothing reads it.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace simd_adamw {
namespace {

struct F32Core {
  static constexpr size_t kWidth = 16;
  using V = __m512;

  static __mmask16 firstLanes(size_t n) { return static_cast<__mmask16>((1u << n) - 1u); }

  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V loadPartial(const float* p, size_t n) { return _mm512_maskz_loadu_ps(firstLanes(n), p); }
  static void storePartial(float* p, V v, size_t n) { _mm512_mask_storeu_ps(p, firstLanes(n), v); }

  static V set1(float x) { return _mm512_set1_ps(x); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static V sqrt(V a) { return _mm512_sqrt_ps(a); }
  static V neg(V a) {
    return _mm512_castsi512_ps(
        _mm512_xor_si512(_mm512_castps_si512(a), _mm512_set1_epi32(static_cast<int>(0x80000000u))));
  }
  // vmaxps returns its second operand when either is NaN; a NaN in `a` is put back by a blend.
  static V nanMax(V a, V b) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), _mm512_max_ps(a, b), a);
  }
  static bool anyNan(V a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q) != 0; }
  static V canonicalizeNan(V a) {
    const V nan = _mm512_castsi512_ps(_mm512_set1_epi32(static_cast<int>(kCanonicalNanBits)));
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), a, nan);
  }
  // Lanes where `test` is NaN take `ifNan`, the others `otherwise`.
  static V selectWhereNan(V test, V ifNan, V otherwise) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(test, test, _CMP_UNORD_Q), otherwise, ifNan);
  }
};

struct F32 : BufferedLanes<F32Core> {};

struct F64 {
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
}  // namespace simd_adamw
