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

// Software prefetch, for ranges larger than the caches. The hardware prefetcher alone keeps too
// few of the streams' lines in flight to saturate DRAM, so each stream is prefetched 512 elements
// ahead, once per 16 elements (a 64-byte line of float32; the narrower arrays are prefetched as
// often, which costs issue slots but no bandwidth). In a range that fits the caches it only costs
// issue slots, so it is used only for ranges of at least kPrefetchMinRange elements. Measured on
// the development machine (Zen 5, 1 thread, a C++ harness calling runElementwise, float32 state):
// a wash at 1M elements, 1.15-1.25x at 2M-8M; on 1,024 tensors of 1,024 elements (each range below
// the threshold, the whole step in L3) prefetching them all was 0.7-0.85x. Prefetching only moves
// data earlier; the arithmetic, and so every result bit, is unchanged.
constexpr size_t kElementsPerLine = 16;
constexpr size_t kPrefetchAhead = 512;
constexpr size_t kPrefetchMinRange = size_t{1} << 18;

template <class T>
inline void prefetchAhead(const T* p, size_t i) {
  if (p != nullptr) __builtin_prefetch(p + i + kPrefetchAhead);
}

// The element loop every driver shares: `vector(i, FullVector{})` for the whole vectors of
// [begin, end), then `vector(i, PartialVector{n})` for the n < kWidth elements left, with
// `prefetch(i)` once per line on long ranges. The tag picks the loads and stores (native/ops/
// lanes.h) at compile time, so the body and the tail share the arithmetic but not a branch. The
// prefetched addresses stay inside the arrays (forming a pointer past their end would be undefined
// behaviour): the prefetching part stops kPrefetchAhead + a line before the end.
//
// The scalar layer (the reference, run only where no SIMD layer is) skips the prefetching part:
// with one float per vector it would be sixteen more copies of the loop body in each of the ops'
// instantiations, for compile time and binary size rather than speed.
template <class F32, class Vector, class Prefetch>
inline void forEachVector(size_t begin, size_t end, Vector vector, Prefetch prefetch) {
  static_assert(kElementsPerLine % F32::kWidth == 0, "a line holds whole vectors");
  size_t i = begin;
  if constexpr (F32::kWidth > 1) {
    if (end - begin >= kPrefetchMinRange) {
      for (; end - i >= kPrefetchAhead + kElementsPerLine; i += kElementsPerLine) {
        prefetch(i);
        for (size_t v = 0; v < kElementsPerLine; v += F32::kWidth) vector(i + v, FullVector{});
      }
    }
  }
  for (; i + F32::kWidth <= end; i += F32::kWidth) vector(i, FullVector{});
  if (i < end) vector(i, PartialVector{end - i});
}

// forEachVector without the prefetching part, for short ranges (a blockwise8 block).
template <class F32, class Vector>
inline void forEachVectorShort(size_t begin, size_t end, Vector vector) {
  size_t i = begin;
  for (; i + F32::kWidth <= end; i += F32::kWidth) vector(i, FullVector{});
  if (i < end) vector(i, PartialVector{end - i});
}

}  // namespace
}  // namespace simd_adamw
