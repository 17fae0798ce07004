// NEON gradient-norm kernel: 2 doubles per vector (AArch64 Advanced SIMD has double lanes), the 16
// partial sums in 8 vectors. No vfmaq_f64 / vmlaq_f64: every square is a separate vmulq_f64 and
// every sum a separate vaddq_f64 (see adamw-neon.cc). FCVTL converts exactly, and Linux runs
// AArch64 user code with subnormals kept (FPCR.FZ = 0), as the other paths do.
#include <arm_neon.h>

#include "grad-norm-loop.h"

#if !defined(__aarch64__)
#error "grad-norm-neon.cc needs AArch64: 32-bit Arm NEON has no double-precision lanes"
#endif

namespace simd_adamw {
namespace {

struct NeonNormLanes {
  static constexpr size_t kWidth = 2;
  static constexpr size_t kBlocksAtOnce = 2;
  using V = float64x2_t;

  static V zero() { return vdupq_n_f64(0.0); }
  static V loadWiden(const float* p) { return vcvt_f64_f32(vld1_f32(p)); }
  static V add(V a, V b) { return vaddq_f64(a, b); }
  static V mul(V a, V b) { return vmulq_f64(a, b); }
  static void store(double* p, V v) { vst1q_f64(p, v); }
};

}  // namespace

void sumSquaresNeon(const float* data, size_t length, double* sums) {
  sumSquaresBlocks<NeonNormLanes>(data, length, sums);
}

}  // namespace simd_adamw
