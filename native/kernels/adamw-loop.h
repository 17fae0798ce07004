// The AdamW update, written once over an abstract vector type and instantiated by every ISA's
// kernel file (the Highway "write once, compile per target" idea, without the library).
//
// A kernel file defines a `Lanes` struct and includes this header. Lanes supplies:
//   kWidth                               floats per vector
//   V                                    the vector type
//   load / store                         kWidth floats, any alignment
//   loadPartial / storePartial           the first n < kWidth floats; other lanes read as 0
//   set1, add, mul, div, sqrt, neg       IEEE float32, each rounded once (no fused multiply-add)
//   nanMax(a, b)                         max that returns NaN if either input is NaN, like
//                                        torch.maximum (a plain SIMD max does not)
//   canonicalizeNan(a)                   a, with every NaN lane replaced by kCanonicalNanBits
//
// Bitwise agreement between ISAs follows from three facts: every lane evaluates the same sequence
// of correctly rounded IEEE operations in the same order, the build uses -ffp-contract=off so the
// compiler fuses nothing, and the tail runs the same `Lanes` operations on a partial vector as the
// body (no separate scalar tail with its own rounding).
//
// Everything here has internal linkage: each kernel file is compiled with different -m flags, and a
// shared inline function with external linkage would let the linker keep the AVX-512 copy for all.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "../adamw.h"

namespace simd_adamw {
namespace {

// The quiet NaN every kernel stores for a NaN result (the bits of std::numeric_limits<float>::
// quiet_NaN() and of JavaScript's NaN written to a Float32Array).
constexpr uint32_t kCanonicalNanBits = 0x7fc00000u;

template <class Lanes>
struct BroadcastScalars {
  typename Lanes::V beta1, oneMinusBeta1, beta2, oneMinusBeta2, decay, l2, negStepSize, epsHat,
      gradFactor;

  explicit BroadcastScalars(const AdamwScalars& s)
      : beta1(Lanes::set1(s.beta1)),
        oneMinusBeta1(Lanes::set1(s.oneMinusBeta1)),
        beta2(Lanes::set1(s.beta2)),
        oneMinusBeta2(Lanes::set1(s.oneMinusBeta2)),
        decay(Lanes::set1(s.decay)),
        l2(Lanes::set1(s.l2)),
        negStepSize(Lanes::set1(s.negStepSize)),
        epsHat(Lanes::set1(s.epsHat)),
        gradFactor(Lanes::set1(s.gradFactor)) {}
};

// One vector of the update. Loads and stores go through Load/Store so that the body (full vectors)
// and the tail (a partial vector) share this exact arithmetic.
template <class Lanes, uint32_t kFlags, class Load, class Store>
inline void adamwVector(const AdamwTensor& t, const BroadcastScalars<Lanes>& c, size_t i, Load load,
                        Store store) {
  constexpr bool kAmsgrad = (kFlags & kAdamwAmsgrad) != 0;
  constexpr bool kMaximize = (kFlags & kAdamwMaximize) != 0;
  constexpr bool kCoupled = (kFlags & kAdamwCoupled) != 0;
  constexpr bool kScaleGrad = (kFlags & kAdamwScaleGrad) != 0;
  using V = typename Lanes::V;
  V grad = load(t.grad + i);
  // As if the caller had scaled the gradient in place (torch's unscale_ and clip_grad_norm_) before
  // the step, but in a register: the gradient array is only read.
  if (kScaleGrad) grad = Lanes::mul(grad, c.gradFactor);
  if (kMaximize) grad = Lanes::neg(grad);
  V param = load(t.param + i);
  if (kCoupled) {
    grad = Lanes::add(grad, Lanes::mul(c.l2, param));
  } else {
    param = Lanes::mul(param, c.decay);
  }
  const V expAvg =
      Lanes::add(Lanes::mul(c.beta1, load(t.expAvg + i)), Lanes::mul(c.oneMinusBeta1, grad));
  const V expAvgSq = Lanes::add(Lanes::mul(c.beta2, load(t.expAvgSq + i)),
                                Lanes::mul(Lanes::mul(c.oneMinusBeta2, grad), grad));
  V secondMoment = expAvgSq;
  if (kAmsgrad) {
    // torch keeps the max of the raw exp_avg_sq, not of the bias-corrected one.
    secondMoment = Lanes::nanMax(load(t.maxExpAvgSq + i), expAvgSq);
    store(t.maxExpAvgSq + i, Lanes::canonicalizeNan(secondMoment));
  }
  const V denom = Lanes::add(Lanes::sqrt(secondMoment), c.epsHat);
  param = Lanes::add(param, Lanes::mul(c.negStepSize, Lanes::div(expAvg, denom)));
  store(t.expAvg + i, Lanes::canonicalizeNan(expAvg));
  store(t.expAvgSq + i, Lanes::canonicalizeNan(expAvgSq));
  store(t.param + i, Lanes::canonicalizeNan(param));
}

// Software prefetch, for tensors larger than the caches. The hardware prefetcher alone keeps too
// few of the four streams' lines in flight to saturate DRAM, so each stream is prefetched this many
// floats (2 KiB) ahead, once per 64-byte line. Measured against the same-run roofline with
// `npm run bench` (bench/RESULTS.md). Prefetching only moves data earlier; the arithmetic, and so
// every result bit, is unchanged.
constexpr size_t kFloatsPerLine = 16;
constexpr size_t kPrefetchAhead = 512;

template <bool kAmsgrad>
inline void prefetchAhead(const AdamwTensor& t, size_t i) {
  __builtin_prefetch(t.param + i + kPrefetchAhead);
  __builtin_prefetch(t.grad + i + kPrefetchAhead);
  __builtin_prefetch(t.expAvg + i + kPrefetchAhead);
  __builtin_prefetch(t.expAvgSq + i + kPrefetchAhead);
  if (kAmsgrad) __builtin_prefetch(t.maxExpAvgSq + i + kPrefetchAhead);
}

template <class Lanes, uint32_t kFlags>
void adamwRange(const AdamwTensor& tensor, const AdamwScalars& s, size_t begin, size_t end) {
  // A local copy: the loop stores floats through pointers the compiler cannot tell apart from the
  // caller's AdamwTensor, so it would reload the array pointers from it on every vector.
  const AdamwTensor t = tensor;
  const BroadcastScalars<Lanes> c(s);
  size_t i = begin;
  const auto load = [](const float* p) { return Lanes::load(p); };
  const auto store = [](float* p, typename Lanes::V v) { Lanes::store(p, v); };
  static_assert(kFloatsPerLine % Lanes::kWidth == 0, "a line holds whole vectors");
  // A line of vectors at a time while the prefetched addresses stay inside the arrays (forming a
  // pointer past their end would be undefined behaviour); then vector by vector.
  for (; end - i >= kPrefetchAhead + kFloatsPerLine; i += kFloatsPerLine) {
    prefetchAhead<(kFlags & kAdamwAmsgrad) != 0>(t, i);
    for (size_t v = 0; v < kFloatsPerLine; v += Lanes::kWidth) {
      adamwVector<Lanes, kFlags>(t, c, i + v, load, store);
    }
  }
  for (; i + Lanes::kWidth <= end; i += Lanes::kWidth) {
    adamwVector<Lanes, kFlags>(t, c, i, load, store);
  }
  if (i < end) {
    const size_t n = end - i;
    const auto loadPartial = [n](const float* p) { return Lanes::loadPartial(p, n); };
    const auto storePartial = [n](float* p, typename Lanes::V v) { Lanes::storePartial(p, v, n); };
    adamwVector<Lanes, kFlags>(t, c, i, loadPartial, storePartial);
  }
}

// One branch-free loop instantiation per combination of flags, indexed by the flags.
template <class Lanes, uint32_t... kFlags>
void adamwDispatch(std::integer_sequence<uint32_t, kFlags...>, const AdamwTensor& t,
                   const AdamwScalars& s, uint32_t flags, size_t begin, size_t end) {
  using Range = void (*)(const AdamwTensor&, const AdamwScalars&, size_t, size_t);
  static constexpr Range kRanges[] = {&adamwRange<Lanes, kFlags>...};
  kRanges[flags & kAdamwAllFlags](t, s, begin, end);
}

// Turns the runtime flags into one of the sixteen loop instantiations (unknown bits are ignored).
template <class Lanes>
void adamwKernel(const AdamwTensor& t, const AdamwScalars& s, uint32_t flags, size_t begin,
                 size_t end) {
  adamwDispatch<Lanes>(std::make_integer_sequence<uint32_t, kAdamwAllFlags + 1>{}, t, s, flags,
                       begin, end);
}

}  // namespace
}  // namespace simd_adamw
