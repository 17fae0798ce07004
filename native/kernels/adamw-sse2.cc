// SSE2 AdamW kernel: 4 floats per vector. SSE2 is part of x86-64, so this path runs on every 64-bit
// x86 CPU. The tail goes through a zero-padded 4-float buffer because SSE2 has no masked load.
#include <emmintrin.h>

#include <cstring>

#include "adamw-loop.h"

namespace simd_adamw {
namespace {

struct Sse2Lanes {
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
  static V canonicalizeNan(V a) {
    const V isNan = _mm_cmpunord_ps(a, a);
    const V nan = _mm_castsi128_ps(_mm_set1_epi32(static_cast<int>(kCanonicalNanBits)));
    return _mm_or_ps(_mm_and_ps(isNan, nan), _mm_andnot_ps(isNan, a));
  }
};

}  // namespace

void adamwSse2(const AdamwTensor& t, const AdamwScalars& s, uint32_t flags, size_t begin,
               size_t end) {
  adamwKernel<Sse2Lanes>(t, s, flags, begin, end);
}

}  // namespace simd_adamw
