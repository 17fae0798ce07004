// The Lion update (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"; the
// reference is google/automl's lion_pytorch.py) in float32, written once over the vector layer
// (native/simd/<isa>.h), and what the three ops of the "lion" family share: their scalars and
// flags. As in the adamw family (native/ops/adamw-math.h) the ops differ only in how they keep the
// one moment, expAvg: float32 (native/ops/lion.h), bf16 (lion-bfloat16.h) or 8-bit blockwise
// (lion-blockwise8.h), each a thin driver around lionMath below.
//
// Per element, in the reference's order (no fused multiply-add; -ffp-contract=off):
//   p = p * decay                               decay = 1 - lr * weightDecay (decoupled)
//   c = beta1 * m + oneMinusBeta1 * g           the interpolation whose sign is the step
//   p = p + negLr * sign(c)                     torch.sign: sign(+-0) = +-0 leaves p in place
//   m = beta2 * m + oneMinusBeta2 * g           updated after the sign, with beta2
// lib/ computes every scalar in double and the plan rounds each to float32 once, as for adamw.
// The update is exactly +-lr or 0 per element once the sign is known, so the only rounding in p
// is that of the decay and of the one add.
#pragma once

#include <cstddef>
#include <cstdint>

#include "element-loop.h"
#include "lanes.h"
#include "op.h"

namespace simd_adamw {

// The family's scalars and flags (every op of the family declares these, so a plan may mix them).
struct LionFamily {
  static constexpr const char* kFamily = "lion";

  enum Scalar : size_t {
    kBeta1,
    kOneMinusBeta1,
    kBeta2,
    kOneMinusBeta2,
    kDecay,  // 1 - lr * weightDecay
    kNegLr,  // -lr
    kScalarCount,
    kGradFactor = kScalarCount,  // the runner's: clipCoef / gradScale, with kScaleGrad
  };
  static constexpr const char* kScalars[] = {"beta1",         "oneMinusBeta1", "beta2",
                                             "oneMinusBeta2", "decay",         "negLr"};

  enum Flag : uint32_t {
    // Step along +g: as in the adamw family, no kernel bit but the sign of the gradient factor
    // (g * -f is exactly -(g * f), torch's negated gradient), which also makes expAvg the average
    // of -g, as the reference run on -g keeps it.
    kMaximize = 1u << 0,
    kStochasticRounding = 1u << 1,  // bf16 state rounded stochastically (lionBfloat16 only)
    kScaleGrad = 1u << 2,           // internal: g *= gradFactor (signed: maximize) first
    kGradDtypeLow = 1u << 3,        // internal: two bits, the tensor's GradDtype
    kGradDtypeHigh = 1u << 4,
    kHasParamBf16 = 1u << 5,  // internal: the tensor has a paramBf16 array to write
  };
  static constexpr uint32_t kNegateGrad = kMaximize;
  static constexpr uint32_t kGradDtypeShift = 3;
  static constexpr uint32_t kGradDtypeMask = kGradDtypeLow | kGradDtypeHigh;
  static constexpr OpFlag kFlags[] = {{"maximize", kMaximize},
                                      {"stochasticRounding", kStochasticRounding}};
  // The bits every op's kernel depends on (lionBfloat16 adds kStochasticRounding): 16 loop
  // instantiations per op, of which 12 are distinct (grad dtype 3 is float32's).
  static constexpr uint32_t kCommonKernelFlags = kScaleGrad | kGradDtypeMask | kHasParamBf16;

  static constexpr GradDtype gradDtypeOf(uint32_t flags) {
    return static_cast<GradDtype>((flags & kGradDtypeMask) >> kGradDtypeShift);
  }
};

static_assert(sizeof(LionFamily::kScalars) / sizeof(LionFamily::kScalars[0]) ==
                  LionFamily::kScalarCount,
              "one name per scalar");

namespace {

template <class F32>
struct LionBroadcast {
  typename F32::V beta1, oneMinusBeta1, beta2, oneMinusBeta2, decay, negLr, gradFactor;

  explicit LionBroadcast(const float* s)
      : beta1(F32::set1(s[LionFamily::kBeta1])),
        oneMinusBeta1(F32::set1(s[LionFamily::kOneMinusBeta1])),
        beta2(F32::set1(s[LionFamily::kBeta2])),
        oneMinusBeta2(F32::set1(s[LionFamily::kOneMinusBeta2])),
        decay(F32::set1(s[LionFamily::kDecay])),
        negLr(F32::set1(s[LionFamily::kNegLr])),
        gradFactor(F32::set1(s[LionFamily::kGradFactor])) {}
};

// One vector's new values.
template <class F32>
struct LionResult {
  typename F32::V param, expAvg;
};

// The float32 arithmetic of one vector, from the widened gradient and the old values.
template <class F32, uint32_t kFlags>
inline LionResult<F32> lionMath(const LionBroadcast<F32>& c, typename F32::V grad,
                                typename F32::V param, typename F32::V expAvg) {
  // In a register, as if the caller had scaled the gradient in place (adamwMath's kScaleGrad).
  if ((kFlags & LionFamily::kScaleGrad) != 0) grad = F32::mul(grad, c.gradFactor);
  const typename F32::V interpolated =
      F32::add(F32::mul(c.beta1, expAvg), F32::mul(c.oneMinusBeta1, grad));
  LionResult<F32> r;
  r.param = F32::add(F32::mul(param, c.decay), F32::mul(c.negLr, F32::sign(interpolated)));
  r.expAvg = F32::add(F32::mul(c.beta2, expAvg), F32::mul(c.oneMinusBeta2, grad));
  return r;
}

}  // namespace
}  // namespace simd_adamw
