// NEON vector layer (AArch64): 4 floats or 2 doubles per vector. Advanced SIMD is part of the
// AArch64 baseline, so this layer needs no -m flags. AArch64 (unlike 32-bit Arm NEON) has correctly
// rounded vector division and square root (FDIV, FSQRT) and double lanes, so every lane performs
// the same IEEE operations as the scalar layer. Partial vectors go through a zero-padded buffer.
// The contract every layer meets is in native/simd/scalar.h.
//
// No fused multiply-add: vmlaq_* and vfmaq_* are never used (GCC and Clang may emit FMLA, a fused
// op, for vmlaq_f32 on AArch64); every product is a separate vmulq and every sum a separate vaddq,
// and -ffp-contract=off keeps the compiler from fusing them itself.
//
// Linux runs AArch64 user code with FPCR.FZ = 0 (subnormals kept) and each step is one correctly
// rounded IEEE operation, so non-NaN results, +-0 and +-Inf included, agree with x86-64 by
// construction. NaN bits would not: the hardware passes a NaN operand's sign and payload through
// (FPCR.DN = 0) by rules that differ between AArch64 and x86 (an invalid operation gives 0x7fc00000
// here, 0xffc00000 on x86), so every NaN result is stored canonicalized (native/ops/adamw.h).
#pragma once

#include <arm_neon.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "canonical-nan.h"
#include "convert.h"

#if !defined(__aarch64__)
#error "native/simd/neon.h needs AArch64: 32-bit Arm NEON has no IEEE vector division or doubles"
#endif

namespace simd_adamw {
namespace {

struct F32 {
  static constexpr size_t kWidth = 4;
  using V = float32x4_t;

  static V load(const float* p) { return vld1q_f32(p); }
  static void store(float* p, V v) { vst1q_f32(p, v); }
  static V loadPartial(const float* p, size_t n) {
    float buffer[kWidth] = {0.0f, 0.0f, 0.0f, 0.0f};
    std::memcpy(buffer, p, n * sizeof(float));
    return vld1q_f32(buffer);
  }
  static void storePartial(float* p, V v, size_t n) {
    float buffer[kWidth];
    vst1q_f32(buffer, v);
    std::memcpy(p, buffer, n * sizeof(float));
  }

  static V set1(float x) { return vdupq_n_f32(x); }
  static V add(V a, V b) { return vaddq_f32(a, b); }
  static V mul(V a, V b) { return vmulq_f32(a, b); }
  static V div(V a, V b) { return vdivq_f32(a, b); }
  static V sqrt(V a) { return vsqrtq_f32(a); }
  // FNEG flips the sign bit only, NaNs included (no quieting), like the scalar `-a`.
  static V neg(V a) { return vnegq_f32(a); }
  // The scalar layer's `isnan(a) ? a : (a > b ? a : b)`, lane by lane: take `a` where a > b or a
  // is NaN (a != a), else `b`. vmaxq_f32 (FMAX) is not used: it quiets a signalling NaN, prefers
  // the first signalling NaN, and orders -0 below +0, where the scalar select returns `b` for
  // equal inputs and passes NaN bits through untouched.
  static V nanMax(V a, V b) {
    const uint32x4_t aIsNan = vmvnq_u32(vceqq_f32(a, a));
    const uint32x4_t takeA = vorrq_u32(vcgtq_f32(a, b), aIsNan);
    return vbslq_f32(takeA, a, b);
  }
  static bool anyNan(V a) { return vmaxvq_u32(vmvnq_u32(vceqq_f32(a, a))) != 0; }
  static V canonicalizeNan(V a) {
    const uint32x4_t isNumber = vceqq_f32(a, a);
    return vbslq_f32(isNumber, a, vreinterpretq_f32_u32(vdupq_n_u32(kCanonicalNanBits)));
  }
  // Lanes where `test` is NaN take `ifNan`, the others `otherwise`.
  static V selectWhereNan(V test, V ifNan, V otherwise) {
    return vbslq_f32(vceqq_f32(test, test), otherwise, ifNan);
  }
  // torch.sign (convert.h's signBits): 1 with the input's sign bit where the input is a nonzero
  // number (< 0 or > 0: FCMLT and FCMGT are false for NaN); +-0 and NaN keep the input, and NaN
  // then becomes the canonical NaN.
  static V sign(V a) {
    const V unit = vbslq_f32(vdupq_n_u32(0x80000000u), a, vdupq_n_f32(1.0f));
    const uint32x4_t nonzero = vorrq_u32(vcltzq_f32(a), vcgtzq_f32(a));
    return canonicalizeNan(vbslq_f32(nonzero, unit, a));
  }

  // The lean-state lanes (native/simd/convert.h has the definitions, one element at a time):
  // 16-bit loads and stores, and the stochastic rounding's random bits. FCVTL widens fp16 exactly
  // (a NaN stays a NaN; its payload never reaches memory: every stored NaN is canonicalized).
  using U = uint32x4_t;

  static uint16x4_t loadHalvesPartial(const uint16_t* p, size_t n) {
    uint16_t buffer[kWidth] = {0, 0, 0, 0};
    std::memcpy(buffer, p, n * sizeof(uint16_t));
    return vld1_u16(buffer);
  }
  static void storeHalvesPartial(uint16_t* p, uint16x4_t halves, size_t n) {
    uint16_t buffer[kWidth];
    vst1_u16(buffer, halves);
    std::memcpy(p, buffer, n * sizeof(uint16_t));
  }
  static V widenBf16(uint16x4_t h) { return vreinterpretq_f32_u32(vshll_n_u16(h, 16)); }
  static V widenF16(uint16x4_t h) { return vcvt_f32_f16(vreinterpret_f16_u16(h)); }
  // (x + bias) >> 16 (the top half), NaN lanes the canonical bf16 NaN.
  static uint16x4_t narrowBf16(V v, uint32x4_t bias) {
    const uint32x4_t rounded = vshrq_n_u32(vaddq_u32(vreinterpretq_u32_f32(v), bias), 16);
    const uint32x4_t isNumber = vceqq_f32(v, v);
    return vmovn_u32(vbslq_u32(isNumber, rounded, vdupq_n_u32(kCanonicalBf16NanBits)));
  }
  static uint32x4_t rneBias(V v) {  // 0x7fff + the kept part's lowest bit
    const uint32x4_t x = vreinterpretq_u32_f32(v);
    return vaddq_u32(vdupq_n_u32(0x7fff), vandq_u32(vshrq_n_u32(x, 16), vdupq_n_u32(1)));
  }

  static V loadBf16(const uint16_t* p) { return widenBf16(vld1_u16(p)); }
  static V loadBf16Partial(const uint16_t* p, size_t n) {
    return widenBf16(loadHalvesPartial(p, n));
  }
  static V loadF16(const uint16_t* p) { return widenF16(vld1_u16(p)); }
  static V loadF16Partial(const uint16_t* p, size_t n) { return widenF16(loadHalvesPartial(p, n)); }
  static void storeBf16(uint16_t* p, V v) { vst1_u16(p, narrowBf16(v, rneBias(v))); }
  static void storeBf16Partial(uint16_t* p, V v, size_t n) {
    storeHalvesPartial(p, narrowBf16(v, rneBias(v)), n);
  }
  static void storeBf16Stochastic(uint16_t* p, V v, U random16) {
    vst1_u16(p, narrowBf16(v, random16));
  }
  static void storeBf16StochasticPartial(uint16_t* p, V v, U random16, size_t n) {
    storeHalvesPartial(p, narrowBf16(v, random16), n);
  }

  static U randomBits(uint32_t key, size_t i) {
    const uint32_t lanes[kWidth] = {0, 1, 2, 3};
    const uint32x4_t index = vaddq_u32(vdupq_n_u32(static_cast<uint32_t>(i)), vld1q_u32(lanes));
    uint32x4_t x = veorq_u32(vdupq_n_u32(key), vmulq_u32(index, vdupq_n_u32(kIndexSpread)));
    x = veorq_u32(x, vshrq_n_u32(x, 16));
    x = vmulq_u32(x, vdupq_n_u32(0x7feb352du));
    x = veorq_u32(x, vshrq_n_u32(x, 15));
    x = vmulq_u32(x, vdupq_n_u32(0x846ca68bu));
    return veorq_u32(x, vshrq_n_u32(x, 16));
  }
  static U low16(U r) { return vandq_u32(r, vdupq_n_u32(0xffff)); }
  static U high16(U r) { return vshrq_n_u32(r, 16); }
};

struct F64 {
  static constexpr size_t kWidth = 2;
  static constexpr size_t kBlocksAtOnce = 2;
  using V = float64x2_t;

  static V zero() { return vdupq_n_f64(0.0); }
  // FCVTL converts exactly.
  static V loadWiden(const float* p) { return vcvt_f64_f32(vld1_f32(p)); }
  static V add(V a, V b) { return vaddq_f64(a, b); }
  static V mul(V a, V b) { return vmulq_f64(a, b); }
  static V load(const double* p) { return vld1q_f64(p); }
  static void store(double* p, V v) { vst1q_f64(p, v); }
};

}  // namespace
}  // namespace simd_adamw
