// SSE2 vector layer: 4 floats or 2 doubles per vector. SSE2 is part of x86-64, so this layer runs
// on every 64-bit x86 CPU. Partial vectors go through a zero-padded buffer: SSE2 has no masked
// load. The contract every layer meets is in native/simd/scalar.h.
#pragma once

#include <emmintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "canonical-nan.h"
#include "convert.h"

namespace simd_adamw {
namespace {

struct F32 {
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
  // torch.sign (convert.h's signBits): 1 with the input's sign bit where the input is a nonzero
  // number (< 0 or > 0: ordered compares, false for NaN); +-0 and NaN keep the input, and NaN then
  // becomes the canonical NaN.
  static V sign(V a) {
    const V unit = _mm_or_ps(_mm_and_ps(a, _mm_set1_ps(-0.0f)), _mm_set1_ps(1.0f));
    const V zero = _mm_setzero_ps();
    const V nonzero = _mm_or_ps(_mm_cmplt_ps(a, zero), _mm_cmpgt_ps(a, zero));
    return canonicalizeNan(_mm_or_ps(_mm_and_ps(nonzero, unit), _mm_andnot_ps(nonzero, a)));
  }

  // The lean-state lanes (native/simd/convert.h has the definitions, one element at a time):
  // 16-bit loads and stores in integer registers, and the stochastic rounding's random bits.
  using U = __m128i;

  static __m128i loadHalves(const uint16_t* p) {  // 4 halves into the low 64 bits
    return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  }
  static __m128i loadHalvesPartial(const uint16_t* p, size_t n) {
    uint16_t buffer[kWidth] = {0, 0, 0, 0};
    std::memcpy(buffer, p, n * sizeof(uint16_t));
    return loadHalves(buffer);
  }
  // Lane j's low 16 bits, of 32-bit lanes holding values that fit an int16 once sign-extended
  // (what an arithmetic shift right by 16 gives), into 4 halves; packs_epi32 saturates nothing
  // then.
  static void storeHalves(uint16_t* p, __m128i lanes) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packs_epi32(lanes, lanes));
  }
  static void storeHalvesPartial(uint16_t* p, __m128i lanes, size_t n) {
    uint16_t buffer[kWidth];
    storeHalves(buffer, lanes);
    std::memcpy(p, buffer, n * sizeof(uint16_t));
  }

  static V widenBf16(__m128i halves) {
    return _mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), halves));
  }
  // widenF16 of convert.h on 4 lanes: magnitude bits shifted into place, rebased by one exact
  // multiply by 2^112; exponent 31 (Inf, NaN) gets exponent 255 instead.
  static V widenF16(__m128i halves) {
    const __m128i h = _mm_unpacklo_epi16(halves, _mm_setzero_si128());
    const __m128i sign = _mm_slli_epi32(_mm_and_si128(h, _mm_set1_epi32(0x8000)), 16);
    const __m128i magnitude = _mm_slli_epi32(_mm_and_si128(h, _mm_set1_epi32(0x7fff)), 13);
    const __m128i rebased =
        _mm_castps_si128(_mm_mul_ps(_mm_castsi128_ps(magnitude), _mm_set1_ps(0x1p112f)));
    const __m128i infOrNan = _mm_cmpgt_epi32(magnitude, _mm_set1_epi32(0x0f7fffff));
    const __m128i special = _mm_or_si128(magnitude, _mm_set1_epi32(0x7f800000));
    const __m128i bits =
        _mm_or_si128(_mm_and_si128(infOrNan, special), _mm_andnot_si128(infOrNan, rebased));
    return _mm_castsi128_ps(_mm_or_si128(bits, sign));
  }
  // (x + bias) >> 16 arithmetically (the top half, sign-extended), NaN lanes the canonical bf16
  // NaN.
  static __m128i narrowBf16(V v, __m128i bias) {
    const __m128i x = _mm_castps_si128(v);
    const __m128i rounded = _mm_srai_epi32(_mm_add_epi32(x, bias), 16);
    const __m128i isNan = _mm_castps_si128(_mm_cmpunord_ps(v, v));
    return _mm_or_si128(_mm_and_si128(isNan, _mm_set1_epi32(kCanonicalBf16NanBits)),
                        _mm_andnot_si128(isNan, rounded));
  }
  static __m128i rneBias(V v) {  // 0x7fff + the kept part's lowest bit
    const __m128i x = _mm_castps_si128(v);
    return _mm_add_epi32(_mm_set1_epi32(0x7fff),
                         _mm_and_si128(_mm_srli_epi32(x, 16), _mm_set1_epi32(1)));
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

  // 32-bit lane products mod 2^32. SSE2 has no pmulld: pmuludq multiplies lanes 0 and 2 (and, on
  // the operands shifted down, 1 and 3) into 64-bit products, whose low halves are interleaved
  // back.
  static __m128i mul32(__m128i a, __m128i b) {
    const __m128i even = _mm_mul_epu32(a, b);
    const __m128i odd = _mm_mul_epu32(_mm_srli_epi64(a, 32), _mm_srli_epi64(b, 32));
    return _mm_unpacklo_epi32(_mm_shuffle_epi32(even, _MM_SHUFFLE(0, 0, 2, 0)),
                              _mm_shuffle_epi32(odd, _MM_SHUFFLE(0, 0, 2, 0)));
  }
  static U randomBits(uint32_t key, size_t i) {
    const __m128i index = _mm_add_epi32(_mm_set1_epi32(static_cast<int>(static_cast<uint32_t>(i))),
                                        _mm_setr_epi32(0, 1, 2, 3));
    __m128i x = _mm_xor_si128(_mm_set1_epi32(static_cast<int>(key)),
                              mul32(index, _mm_set1_epi32(static_cast<int>(kIndexSpread))));
    x = _mm_xor_si128(x, _mm_srli_epi32(x, 16));
    x = mul32(x, _mm_set1_epi32(0x7feb352d));
    x = _mm_xor_si128(x, _mm_srli_epi32(x, 15));
    x = mul32(x, _mm_set1_epi32(static_cast<int>(0x846ca68bu)));
    return _mm_xor_si128(x, _mm_srli_epi32(x, 16));
  }
  static U low16(U r) { return _mm_and_si128(r, _mm_set1_epi32(0xffff)); }
  static U high16(U r) { return _mm_srli_epi32(r, 16); }
};

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
  static V load(const double* p) { return _mm_loadu_pd(p); }
  static void store(double* p, V v) { _mm_storeu_pd(p, v); }
};

}  // namespace
}  // namespace simd_adamw
