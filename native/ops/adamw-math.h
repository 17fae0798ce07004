// The Adam/AdamW update (torch.optim.AdamW and torch.optim.Adam, single-tensor form) in float32,
// written once over the vector layer (native/simd/<isa>.h), and what the three ops of the "adamw"
// family share: their scalars and flags. The ops differ only in how they load and store the state:
// float32 (native/ops/adamw.h), bf16 (adamw-bfloat16.h) and 8-bit blockwise (adamw-blockwise8.h);
// each is a thin driver around adamwMath below, so the arithmetic is the same on all of them.
//
// lib/ computes every scalar in double precision from the user's hyperparameters (as PyTorch does
// in Python) and the addon rounds each to float32 once; the kernel never derives one scalar from
// another. That keeps `1 - beta2` exact for beta2 = 0.9999, and keeps all ISAs on the same inputs.
//
// The update is PyTorch's
//   p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
// with numerator and denominator multiplied by sqrt(bc2), the same quantity with one division and
// no multiply per element in the denominator:
//   p += negStepSize * (m / (sqrt(v) + epsHat)),
//   negStepSize = -lr * sqrt(bc2) / bc1,  epsHat = eps * sqrt(bc2).
//
// Bitwise agreement between ISAs follows from three facts: every lane evaluates the same sequence
// of correctly rounded IEEE operations in the same order, the build uses -ffp-contract=off so the
// compiler fuses nothing, and the tail runs the same operations on a partial vector as the body (no
// separate scalar tail with its own rounding). NaN bits are the exception IEEE leaves open, so
// every NaN stored is the canonical one.
#pragma once

#include <cstddef>
#include <cstdint>

#include "element-loop.h"
#include "lanes.h"
#include "op.h"

namespace simd_adamw {

// The family's scalars and flags (every op of the family declares these, so a plan may mix them).
struct AdamwFamily {
  static constexpr const char* kFamily = "adamw";

  enum Scalar : size_t {
    kBeta1,
    kOneMinusBeta1,
    kBeta2,
    kOneMinusBeta2,
    kDecay,        // AdamW's decoupled decay factor 1 - lr * weightDecay (1 for Adam)
    kL2,           // Adam's coupled weight decay (g += l2 * p); used only with kCoupled
    kNegStepSize,  // -lr * sqrt(bc2) / bc1
    kEpsHat,       // eps * sqrt(bc2)
    kScalarCount,
    kGradFactor = kScalarCount,  // the runner's: clipCoef / gradScale, with kScaleGrad
  };
  static constexpr const char* kScalars[] = {
      "beta1", "oneMinusBeta1", "beta2", "oneMinusBeta2", "decay", "l2", "negStepSize", "epsHat"};

  // Each combination an op uses is a separate instantiation of its loop, so the hot loop has no
  // branches. The public flags are lib/'s; the rest are set by the plan and the fused step.
  enum Flag : uint32_t {
    kAmsgrad = 1u << 0,  // keep and use maxExpAvgSq
    // Step along +g. Not a kernel bit: the plan applies it as the sign of the gradient factor
    // (kScaleGrad with factor -1, or -clipCoef / gradScale), since g * -f rounds to exactly
    // -(g * f), the bits torch's negated gradient gives, and it halves the instantiations.
    kMaximize = 1u << 1,
    kCoupled = 1u << 2,             // Adam with L2: g += l2 * p before the moments (no decay)
    kStochasticRounding = 1u << 3,  // bf16 state rounded stochastically (adamwBfloat16 only)
    kScaleGrad = 1u << 4,           // internal: g *= gradFactor (signed: maximize) before L2
    kGradDtypeLow = 1u << 5,        // internal: two bits, the tensor's GradDtype
    kGradDtypeHigh = 1u << 6,
    kHasParamBf16 = 1u << 7,  // internal: the tensor has a paramBf16 array to write
  };
  static constexpr uint32_t kNegateGrad = kMaximize;
  static constexpr uint32_t kGradDtypeShift = 5;
  static constexpr uint32_t kGradDtypeMask = kGradDtypeLow | kGradDtypeHigh;
  static constexpr OpFlag kFlags[] = {{"amsgrad", kAmsgrad},
                                      {"maximize", kMaximize},
                                      {"coupled", kCoupled},
                                      {"stochasticRounding", kStochasticRounding}};
  // The bits every op's kernel depends on (adamwBfloat16 adds kStochasticRounding).
  static constexpr uint32_t kCommonKernelFlags =
      kAmsgrad | kCoupled | kScaleGrad | kGradDtypeMask | kHasParamBf16;

  static constexpr GradDtype gradDtypeOf(uint32_t flags) {
    return static_cast<GradDtype>((flags & kGradDtypeMask) >> kGradDtypeShift);
  }
};

static_assert(sizeof(AdamwFamily::kScalars) / sizeof(AdamwFamily::kScalars[0]) ==
                  AdamwFamily::kScalarCount,
              "one name per scalar");

namespace {

template <class F32>
struct AdamwBroadcast {
  typename F32::V beta1, oneMinusBeta1, beta2, oneMinusBeta2, decay, l2, negStepSize, epsHat,
      gradFactor;

  explicit AdamwBroadcast(const float* s)
      : beta1(F32::set1(s[AdamwFamily::kBeta1])),
        oneMinusBeta1(F32::set1(s[AdamwFamily::kOneMinusBeta1])),
        beta2(F32::set1(s[AdamwFamily::kBeta2])),
        oneMinusBeta2(F32::set1(s[AdamwFamily::kOneMinusBeta2])),
        decay(F32::set1(s[AdamwFamily::kDecay])),
        l2(F32::set1(s[AdamwFamily::kL2])),
        negStepSize(F32::set1(s[AdamwFamily::kNegStepSize])),
        epsHat(F32::set1(s[AdamwFamily::kEpsHat])),
        gradFactor(F32::set1(s[AdamwFamily::kGradFactor])) {}
};

// One vector's new values. secondMoment is the new maxExpAvgSq with amsgrad (else expAvgSq).
template <class F32>
struct AdamwResult {
  typename F32::V param, expAvg, expAvgSq, secondMoment;
};

// The float32 arithmetic of one vector, from the widened gradient and the old values (maxExpAvgSq
// is read only with amsgrad).
template <class F32, uint32_t kFlags>
inline AdamwResult<F32> adamwMath(const AdamwBroadcast<F32>& c, typename F32::V grad,
                                  typename F32::V param, typename F32::V expAvg,
                                  typename F32::V expAvgSq, typename F32::V maxExpAvgSq) {
  constexpr bool kAmsgrad = (kFlags & AdamwFamily::kAmsgrad) != 0;
  constexpr bool kCoupled = (kFlags & AdamwFamily::kCoupled) != 0;
  constexpr bool kScaleGrad = (kFlags & AdamwFamily::kScaleGrad) != 0;
  using V = typename F32::V;
  // As if the caller had scaled the gradient in place (torch's unscale_ and clip_grad_norm_) before
  // the step, but in a register: the gradient array is only read. maximize is this factor's sign
  // (see kMaximize).
  if (kScaleGrad) grad = F32::mul(grad, c.gradFactor);
  if (kCoupled) {
    grad = F32::add(grad, F32::mul(c.l2, param));
  } else {
    param = F32::mul(param, c.decay);
  }
  AdamwResult<F32> r;
  r.expAvg = F32::add(F32::mul(c.beta1, expAvg), F32::mul(c.oneMinusBeta1, grad));
  r.expAvgSq =
      F32::add(F32::mul(c.beta2, expAvgSq), F32::mul(F32::mul(c.oneMinusBeta2, grad), grad));
  r.secondMoment = r.expAvgSq;
  // torch keeps the max of the raw exp_avg_sq, not of the bias-corrected one.
  if (kAmsgrad) r.secondMoment = F32::nanMax(maxExpAvgSq, r.expAvgSq);
  const V denom = F32::add(F32::sqrt(r.secondMoment), c.epsHat);
  r.param = F32::add(param, F32::mul(c.negStepSize, F32::div(r.expAvg, denom)));
  return r;
}

}  // namespace
}  // namespace simd_adamw
