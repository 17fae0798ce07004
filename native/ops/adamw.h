// The Adam/AdamW update (torch.optim.AdamW and torch.optim.Adam, single-tensor form): its layout,
// which is what native.ops.adamw exports to lib/, and its algorithm, written once over the vector
// layer (native/simd/<isa>.h) and compiled for every ISA by native/kernels/kernels.cc.
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
// every NaN stored is the canonical one (see storeAll below).
#pragma once

#include <cstddef>
#include <cstdint>

#include "op.h"

namespace simd_adamw {

struct AdamwOp {
  static constexpr const char* kName = "adamw";

  enum Array : size_t { kParam, kGrad, kExpAvg, kExpAvgSq, kMaxExpAvgSq };
  static constexpr const char* kArrays[] = {"param", "grad", "expAvg", "expAvgSq", "maxExpAvgSq"};

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

  // Each combination is a separate instantiation of the loop, so the hot loop has no branches.
  enum Flag : uint32_t {
    kAmsgrad = 1u << 0,    // keep and use maxExpAvgSq
    kMaximize = 1u << 1,   // step along +g
    kCoupled = 1u << 2,    // Adam with L2: g += l2 * p before the moments (no decoupled decay)
    kScaleGrad = 1u << 3,  // g *= gradFactor first, before maximize and L2 (gradients unchanged)
  };
  static constexpr OpFlag kFlags[] = {
      {"amsgrad", kAmsgrad}, {"maximize", kMaximize}, {"coupled", kCoupled}};
  static constexpr OpOptionalArray kOptionalArrays[] = {{kMaxExpAvgSq, kAmsgrad}};

  template <class F32, uint32_t kFlags>
  static void run(const Job& job, size_t begin, size_t end);
};

static_assert(sizeof(AdamwOp::kScalars) / sizeof(AdamwOp::kScalars[0]) == AdamwOp::kScalarCount,
              "one name per scalar");

namespace {

template <class F32>
struct AdamwBroadcast {
  typename F32::V beta1, oneMinusBeta1, beta2, oneMinusBeta2, decay, l2, negStepSize, epsHat,
      gradFactor;

  explicit AdamwBroadcast(const float* s)
      : beta1(F32::set1(s[AdamwOp::kBeta1])),
        oneMinusBeta1(F32::set1(s[AdamwOp::kOneMinusBeta1])),
        beta2(F32::set1(s[AdamwOp::kBeta2])),
        oneMinusBeta2(F32::set1(s[AdamwOp::kOneMinusBeta2])),
        decay(F32::set1(s[AdamwOp::kDecay])),
        l2(F32::set1(s[AdamwOp::kL2])),
        negStepSize(F32::set1(s[AdamwOp::kNegStepSize])),
        epsHat(F32::set1(s[AdamwOp::kEpsHat])),
        gradFactor(F32::set1(s[AdamwOp::kGradFactor])) {}
};

// The arrays, copied out of the Job: the loop stores floats through pointers the compiler cannot
// tell apart from the caller's Job, so it would reload the array pointers on every vector.
struct AdamwArrays {
  float* param;
  const float* grad;
  float* expAvg;
  float* expAvgSq;
  float* maxExpAvgSq;
};

// One vector of the update. Loads and stores go through Load/Store so that the body (full vectors)
// and the tail (a partial vector) share this exact arithmetic.
//
// NaN canonicalization costs a compare and a blend per stored vector, about a sixth of the loop's
// instructions, for a value that is almost never NaN. It is not needed per array: the new param is
// param * decay + negStepSize * (expAvg / (sqrt(s) + epsHat)) with s = expAvgSq or the AMSGrad max
// of it, and an IEEE add, mul, div or sqrt with a NaN operand returns NaN. So whenever the new
// expAvg, expAvgSq or max (all of them operands of that expression) holds a NaN in some lane, the
// new param holds a NaN in that lane too. One test of the param vector therefore decides: no NaN
// there means nothing stored is NaN, and the stores need no canonicalization (it would be the
// identity); a NaN there (rare: a NaN gradient or state, or a padding lane of the tail) takes the
// slow path, which canonicalizes every stored vector as before. The stored bits are identical
// either way, on every ISA.
template <class F32, uint32_t kFlags, class Load, class Store>
inline void adamwVector(const AdamwArrays& t, const AdamwBroadcast<F32>& c, size_t i, Load load,
                        Store store) {
  constexpr bool kAmsgrad = (kFlags & AdamwOp::kAmsgrad) != 0;
  constexpr bool kMaximize = (kFlags & AdamwOp::kMaximize) != 0;
  constexpr bool kCoupled = (kFlags & AdamwOp::kCoupled) != 0;
  constexpr bool kScaleGrad = (kFlags & AdamwOp::kScaleGrad) != 0;
  using V = typename F32::V;
  V grad = load(t.grad + i);
  // As if the caller had scaled the gradient in place (torch's unscale_ and clip_grad_norm_) before
  // the step, but in a register: the gradient array is only read.
  if (kScaleGrad) grad = F32::mul(grad, c.gradFactor);
  if (kMaximize) grad = F32::neg(grad);
  V param = load(t.param + i);
  if (kCoupled) {
    grad = F32::add(grad, F32::mul(c.l2, param));
  } else {
    param = F32::mul(param, c.decay);
  }
  const V expAvg = F32::add(F32::mul(c.beta1, load(t.expAvg + i)), F32::mul(c.oneMinusBeta1, grad));
  const V expAvgSq = F32::add(F32::mul(c.beta2, load(t.expAvgSq + i)),
                              F32::mul(F32::mul(c.oneMinusBeta2, grad), grad));
  V secondMoment = expAvgSq;
  // torch keeps the max of the raw exp_avg_sq, not of the bias-corrected one.
  if (kAmsgrad) secondMoment = F32::nanMax(load(t.maxExpAvgSq + i), expAvgSq);
  const V denom = F32::add(F32::sqrt(secondMoment), c.epsHat);
  param = F32::add(param, F32::mul(c.negStepSize, F32::div(expAvg, denom)));
  if (__builtin_expect(F32::anyNan(param), 0)) {
    if (kAmsgrad) store(t.maxExpAvgSq + i, F32::canonicalizeNan(secondMoment));
    store(t.expAvg + i, F32::canonicalizeNan(expAvg));
    store(t.expAvgSq + i, F32::canonicalizeNan(expAvgSq));
    store(t.param + i, F32::canonicalizeNan(param));
  } else {
    if (kAmsgrad) store(t.maxExpAvgSq + i, secondMoment);
    store(t.expAvg + i, expAvg);
    store(t.expAvgSq + i, expAvgSq);
    store(t.param + i, param);
  }
}

// Software prefetch, for ranges larger than the caches. The hardware prefetcher alone keeps too
// few of the four streams' lines in flight to saturate DRAM, so each stream is prefetched this many
// floats (2 KiB) ahead, once per 64-byte line. In a range that fits the caches it only costs issue
// slots, so it is used only for ranges of at least kPrefetchMinRange elements. Measured on the
// development machine (Zen 5, 1 thread, a C++ harness calling runElementwise): a wash at 1M
// elements, 1.15-1.25x at 2M-8M; on 1,024 tensors of 1,024 elements (each range below the
// threshold, the whole step in L3) prefetching them all was 0.7-0.85x. Prefetching only moves data
// earlier; the arithmetic, and so every result bit, is unchanged.
constexpr size_t kFloatsPerLine = 16;
constexpr size_t kPrefetchAhead = 512;
constexpr size_t kPrefetchMinRange = size_t{1} << 18;

template <bool kAmsgrad>
inline void adamwPrefetch(const AdamwArrays& t, size_t i) {
  __builtin_prefetch(t.param + i + kPrefetchAhead);
  __builtin_prefetch(t.grad + i + kPrefetchAhead);
  __builtin_prefetch(t.expAvg + i + kPrefetchAhead);
  __builtin_prefetch(t.expAvgSq + i + kPrefetchAhead);
  if (kAmsgrad) __builtin_prefetch(t.maxExpAvgSq + i + kPrefetchAhead);
}

}  // namespace

template <class F32, uint32_t kFlags>
void AdamwOp::run(const Job& job, size_t begin, size_t end) {
  const AdamwArrays t{job.arrays[kParam], job.arrays[kGrad], job.arrays[kExpAvg],
                      job.arrays[kExpAvgSq], job.arrays[kMaxExpAvgSq]};
  const AdamwBroadcast<F32> c(job.scalars);
  size_t i = begin;
  const auto load = [](const float* p) { return F32::load(p); };
  const auto store = [](float* p, typename F32::V v) { F32::store(p, v); };
  static_assert(kFloatsPerLine % F32::kWidth == 0, "a line holds whole vectors");
  if (end - begin >= kPrefetchMinRange) {
    // A line of vectors at a time while the prefetched addresses stay inside the arrays (forming a
    // pointer past their end would be undefined behaviour); then vector by vector.
    for (; end - i >= kPrefetchAhead + kFloatsPerLine; i += kFloatsPerLine) {
      adamwPrefetch<(kFlags & kAmsgrad) != 0>(t, i);
      for (size_t v = 0; v < kFloatsPerLine; v += F32::kWidth) {
        adamwVector<F32, kFlags>(t, c, i + v, load, store);
      }
    }
  }
  for (; i + F32::kWidth <= end; i += F32::kWidth) {
    adamwVector<F32, kFlags>(t, c, i, load, store);
  }
  if (i < end) {
    const size_t n = end - i;
    const auto loadPartial = [n](const float* p) { return F32::loadPartial(p, n); };
    const auto storePartial = [n](float* p, typename F32::V v) { F32::storePartial(p, v, n); };
    adamwVector<F32, kFlags>(t, c, i, loadPartial, storePartial);
  }
}

}  // namespace simd_adamw
