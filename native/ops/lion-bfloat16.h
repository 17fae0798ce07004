// The lionBfloat16 op: Lion with expAvg stored as bf16 bits (Uint16Array), 2 bytes of state per
// param. expAvg is widened to float32 (exact), updated by the shared float32 math (native/ops/
// lion-math.h) after the param's sign step has used the widened value, and then rounded to bf16:
// to nearest even, or, with stochasticRounding, up with probability (dropped bits) / 2^16 from the
// low 16 of the element's counter-based random bits (randomBitsOf(job.seed, i), i the index in the
// tensor, as adamwBfloat16's expAvg takes them), so results do not depend on how a tensor is cut
// into threads or vectors.
#pragma once

#include <cstddef>
#include <cstdint>

#include "lion.h"
#include "op.h"

namespace simd_adamw {

// lion's layout (native/ops/lion.h) but for expAvg's element type, and the seeded flag.
struct LionBfloat16Op : LionOp {
  static constexpr const char* kName = "lionBfloat16";
  static constexpr ArrayType kArrayTypes[] = {ArrayType::kFloat32, ArrayType::kGrad,
                                              ArrayType::kBfloat16, ArrayType::kBfloat16};
  static constexpr uint32_t kSeededFlag = kStochasticRounding;
  static constexpr uint32_t kKernelFlags = kCommonKernelFlags | kStochasticRounding;

  template <class F32, uint32_t kFlags>
  static void run(const Job& job, size_t begin, size_t end);
};

// The shared driver of native/ops/lion.h, with bf16 state.
template <class F32, uint32_t kFlags>
void LionBfloat16Op::run(const Job& job, size_t begin, size_t end) {
  lionElementwise<F32, kFlags, uint16_t>(job, begin, end);
}

}  // namespace simd_adamw
