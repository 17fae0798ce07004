// AVX2 vector layer: 8 floats or 4 doubles per vector. Compiled with -mavx2 only (no -mfma: a fused
// multiply-add would round differently from the other layers). Dispatch uses it only when the CPU
// and the OS support AVX state. Partial vectors use AVX's masked load/store. The contract every
// layer meets is in native/simd/scalar.h.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "canonical-nan.h"
#include "convert.h"

namespace simd_adamw {
namespace {

struct F32 {
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
  // torch.sign (convert.h's signBits): 1 with the input's sign bit where the input is a nonzero
  // number (not equal to 0, ordered: false for NaN); +-0 and NaN keep the input, and NaN then
  // becomes the canonical NaN.
  static V sign(V a) {
    const V unit = _mm256_or_ps(_mm256_and_ps(a, _mm256_set1_ps(-0.0f)), _mm256_set1_ps(1.0f));
    const V nonzero = _mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_NEQ_OQ);
    return canonicalizeNan(_mm256_blendv_ps(a, unit, nonzero));
  }

  // The lean-state lanes (native/simd/convert.h has the definitions, one element at a time):
  // 16-bit loads and stores in integer registers, and the stochastic rounding's random bits.
  using U = __m256i;

  static __m256i loadHalves(const uint16_t* p) {  // 8 halves, zero-extended to 32-bit lanes
    return _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static __m256i loadHalvesPartial(const uint16_t* p, size_t n) {
    uint16_t buffer[kWidth] = {};
    std::memcpy(buffer, p, n * sizeof(uint16_t));
    return loadHalves(buffer);
  }
  // The low 16 bits of each 32-bit lane (values 0..0xffff: packus saturates nothing), in order:
  // packus works within 128-bit halves, so the two 64-bit results are gathered by a permute.
  static void storeHalves(uint16_t* p, __m256i lanes) {
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(lanes, lanes), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
  }
  static void storeHalvesPartial(uint16_t* p, __m256i lanes, size_t n) {
    uint16_t buffer[kWidth];
    storeHalves(buffer, lanes);
    std::memcpy(p, buffer, n * sizeof(uint16_t));
  }

  static V widenBf16(__m256i h) { return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)); }
  // widenF16 of convert.h on 8 lanes: magnitude bits shifted into place, rebased by one exact
  // multiply by 2^112; exponent 31 (Inf, NaN) gets exponent 255 instead. (F16C's vcvtph2ps would
  // give the same bits, but it is not part of AVX2, which is all dispatch checks.)
  static V widenF16(__m256i h) {
    const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x8000)), 16);
    const __m256i magnitude = _mm256_slli_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x7fff)), 13);
    const __m256 rebased = _mm256_mul_ps(_mm256_castsi256_ps(magnitude), _mm256_set1_ps(0x1p112f));
    const __m256i infOrNan = _mm256_cmpgt_epi32(magnitude, _mm256_set1_epi32(0x0f7fffff));
    const __m256 special =
        _mm256_castsi256_ps(_mm256_or_si256(magnitude, _mm256_set1_epi32(0x7f800000)));
    const __m256 bits = _mm256_blendv_ps(rebased, special, _mm256_castsi256_ps(infOrNan));
    return _mm256_or_ps(bits, _mm256_castsi256_ps(sign));
  }
  // (x + bias) >> 16 (the top half), NaN lanes the canonical bf16 NaN.
  static __m256i narrowBf16(V v, __m256i bias) {
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_castps_si256(v), bias), 16);
    return _mm256_castps_si256(_mm256_blendv_ps(
        _mm256_castsi256_ps(rounded), _mm256_castsi256_ps(_mm256_set1_epi32(kCanonicalBf16NanBits)),
        _mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
  }
  static __m256i rneBias(V v) {  // 0x7fff + the kept part's lowest bit
    const __m256i x = _mm256_castps_si256(v);
    return _mm256_add_epi32(_mm256_set1_epi32(0x7fff),
                            _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1)));
  }

  static V loadBf16(const uint16_t* p) { return widenBf16(loadHalves(p)); }
  static V loadBf16Partial(const uint16_t* p, size_t n) {
    return widenBf16(loadHalvesPartial(p, n));
  }
  static V loadF16(const uint16_t* p) { return widenF16(loadHalves(p)); }
  static V loadF16Partial(const uint16_t* p, size_t n) { return widenF16(loadHalvesPartial(p, n)); }
  static void storeBf16(uint16_t* p, V v) { storeHalves(p, narrowBf16(v, rneBias(v))); }
  static void storeBf16Partial(uint16_t* p, V v, size_t n) {
    storeHalvesPartial(p, narrowBf16(v, rneBias(v)), n);
  }
  static void storeBf16Stochastic(uint16_t* p, V v, U random16) {
    storeHalves(p, narrowBf16(v, random16));
  }
  static void storeBf16StochasticPartial(uint16_t* p, V v, U random16, size_t n) {
    storeHalvesPartial(p, narrowBf16(v, random16), n);
  }

  static U randomBits(uint32_t key, size_t i) {
    const __m256i index =
        _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(i))),
                         _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256i x = _mm256_xor_si256(
        _mm256_set1_epi32(static_cast<int>(key)),
        _mm256_mullo_epi32(index, _mm256_set1_epi32(static_cast<int>(kIndexSpread))));
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32(0x7feb352d));
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32(static_cast<int>(0x846ca68bu)));
    return _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
  }
  static U low16(U r) { return _mm256_and_si256(r, _mm256_set1_epi32(0xffff)); }
  static U high16(U r) { return _mm256_srli_epi32(r, 16); }
};

struct F64 {
  static constexpr size_t kWidth = 4;
  static constexpr size_t kBlocksAtOnce = 2;
  using V = __m256d;

  static V zero() { return _mm256_setzero_pd(); }
  static V loadWiden(const float* p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static V load(const double* p) { return _mm256_loadu_pd(p); }
  static void store(double* p, V v) { _mm256_storeu_pd(p, v); }
};

}  // namespace
}  // namespace simd_adamw
