// AVX-512F vector layer: 16 floats or 8 doubles per vector. Compiled with -mavx512f only (no FMA
// contraction: -ffp-contract=off). Dispatch uses it only when the CPU has AVX-512F and the OS saves
// ZMM state. Partial vectors use mask registers, which also suppress faults on the lanes past the
// end. The contract every layer meets is in native/simd/scalar.h.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "canonical-nan.h"
#include "convert.h"

// GCC 12's _mm512_sqrt_ps/_mm512_max_ps/_mm512_cvtps_pd pass _mm512_undefined_*() as the unused
// merge source and then warn that it may be uninitialized (GCC bug 105593, fixed in GCC 13).
// Nothing reads it.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace simd_adamw {
namespace {

struct F32 {
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
  // torch.sign (convert.h's signBits): 1 with the input's sign bit where the input is a nonzero
  // number (not equal to 0, ordered: false for NaN); +-0 and NaN keep the input, and NaN then
  // becomes the canonical NaN. (AVX-512F has no float and/or, hence the integer ones.)
  static V sign(V a) {
    const __m512i signBit =
        _mm512_and_si512(_mm512_castps_si512(a), _mm512_set1_epi32(static_cast<int>(0x80000000u)));
    const V unit = _mm512_castsi512_ps(_mm512_or_si512(signBit, _mm512_set1_epi32(0x3f800000)));
    const __mmask16 nonzero = _mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_NEQ_OQ);
    return canonicalizeNan(_mm512_mask_blend_ps(nonzero, a, unit));
  }

  // The lean-state lanes (native/simd/convert.h has the definitions, one element at a time):
  // 16-bit loads and stores, and the stochastic rounding's random bits. AVX-512F has the 16 <-> 32
  // bit conversions (vpmovzxwd, vpmovdw with a mask) and vcvtph2ps, the exact fp16 widening.
  using U = __m512i;

  static __m256i loadHalves(const uint16_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  // Masked 16-bit loads need AVX-512BW: a partial vector goes through a zero-padded buffer.
  static __m256i loadHalvesPartial(const uint16_t* p, size_t n) {
    uint16_t buffer[kWidth] = {};
    std::memcpy(buffer, p, n * sizeof(uint16_t));
    return loadHalves(buffer);
  }

  static V widenBf16(__m256i halves) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(halves), 16));
  }
  // Exact for every finite half and +-Inf; a NaN stays a NaN (its payload never reaches memory:
  // every stored NaN is canonicalized).
  static V widenF16(__m256i halves) { return _mm512_cvtph_ps(halves); }
  // (x + bias) >> 16 (the top half), NaN lanes the canonical bf16 NaN.
  static __m512i narrowBf16(V v, __m512i bias) {
    const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(_mm512_castps_si512(v), bias), 16);
    return _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), rounded,
                                   _mm512_set1_epi32(kCanonicalBf16NanBits));
  }
  static __m512i rneBias(V v) {  // 0x7fff + the kept part's lowest bit
    const __m512i x = _mm512_castps_si512(v);
    return _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                            _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1)));
  }
  static void storeHalves(uint16_t* p, __m512i lanes) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(lanes));
  }
  static void storeHalvesPartial(uint16_t* p, __m512i lanes, size_t n) {
    _mm512_mask_cvtepi32_storeu_epi16(p, firstLanes(n), lanes);
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
    const __m512i index =
        _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(i))),
                         _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    __m512i x = _mm512_xor_si512(
        _mm512_set1_epi32(static_cast<int>(key)),
        _mm512_mullo_epi32(index, _mm512_set1_epi32(static_cast<int>(kIndexSpread))));
    x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
    x = _mm512_mullo_epi32(x, _mm512_set1_epi32(0x7feb352d));
    x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 15));
    x = _mm512_mullo_epi32(x, _mm512_set1_epi32(static_cast<int>(0x846ca68bu)));
    return _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
  }
  static U low16(U r) { return _mm512_and_si512(r, _mm512_set1_epi32(0xffff)); }
  static U high16(U r) { return _mm512_srli_epi32(r, 16); }
};

struct F64 {
  static constexpr size_t kWidth = 8;
  static constexpr size_t kBlocksAtOnce = 4;
  using V = __m512d;

  static V zero() { return _mm512_setzero_pd(); }
  static V loadWiden(const float* p) { return _mm512_cvtps_pd(_mm256_loadu_ps(p)); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static V load(const double* p) { return _mm512_loadu_pd(p); }
  static void store(double* p, V v) { _mm512_storeu_pd(p, v); }
};

}  // namespace
}  // namespace simd_adamw
