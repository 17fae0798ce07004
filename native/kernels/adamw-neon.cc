// NEON AdamW kernel: 4 floats per vector. Advanced SIMD is part of the AArch64 baseline, so this
// path runs on every 64-bit Arm CPU and needs no -m flags. AArch64 (unlike 32-bit Arm NEON) has
// correctly rounded vector division and square root (FDIV, FSQRT), so every lane performs the same
// IEEE operations as the scalar kernel. The tail goes through a zero-padded 4-float buffer, as in
// the SSE2 kernel.
//
// No fused multiply-add: vmlaq_f32 and vfmaq_f32 are never used (GCC and Clang may emit FMLA, a
// fused op, for vmlaq_f32 on AArch64); every product is a separate vmulq_f32 and every sum a
// separate vaddq_f32, and -ffp-contract=off keeps the compiler from fusing them itself.
//
// Every output, NaNs included, is bitwise equal to adamwScalar's and to every x86-64 kernel's
// (native/tests/kernel-agreement.cc checks it under qemu and natively on x86-64). Linux runs
// AArch64 user code with FPCR.FZ = 0 (subnormals kept) and each step is one correctly rounded IEEE
// operation, so non-NaN results, +-0 and +-Inf included, agree by construction. NaN bits would
// not: the hardware passes a NaN operand's sign and payload through (FPCR.DN = 0) by rules that
// differ between AArch64 and x86 (an invalid operation gives 0x7fc00000 here, 0xffc00000 on x86),
// and GCC orders commutative operands and folds negations differently in each kernel. So every NaN
// result is stored as the canonical 0x7fc00000 (canonicalizeNan in adamw-loop.h).
#include <arm_neon.h>

#include <cstring>

#include "adamw-loop.h"

#if !defined(__aarch64__)
#error "adamw-neon.cc needs AArch64: 32-bit Arm NEON has no IEEE vector division or square root"
#endif

namespace simd_adamw {
namespace {

struct NeonLanes {
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
  // The scalar kernel's `isnan(a) ? a : (a > b ? a : b)`, lane by lane: take `a` where a > b or a
  // is NaN (a != a), else `b`. vmaxq_f32 (FMAX) is not used: it quiets a signalling NaN, prefers
  // the first signalling NaN, and orders -0 below +0, where the scalar select returns `b` for
  // equal inputs and passes NaN bits through untouched.
  static V nanMax(V a, V b) {
    const uint32x4_t aIsNan = vmvnq_u32(vceqq_f32(a, a));
    const uint32x4_t takeA = vorrq_u32(vcgtq_f32(a, b), aIsNan);
    return vbslq_f32(takeA, a, b);
  }
  static V canonicalizeNan(V a) {
    const uint32x4_t isNumber = vceqq_f32(a, a);
    return vbslq_f32(isNumber, a, vreinterpretq_f32_u32(vdupq_n_u32(kCanonicalNanBits)));
  }
};

}  // namespace

void adamwNeon(const AdamwTensor& t, const AdamwScalars& s, uint32_t flags, size_t begin,
               size_t end) {
  adamwKernel<NeonLanes>(t, s, flags, begin, end);
}

}  // namespace simd_adamw
