// The adamwBfloat16 op: AdamW/Adam with the moments stored as bf16 bits (Uint16Array), 4 bytes of
// state per param instead of 8. The moments are widened to float32 (exact), updated by the shared
// float32 math (native/ops/adamw-math.h), the param updated from the new float32 moments, and only
// then the moments rounded to bf16: to nearest even, or, with stochasticRounding, up with
// probability (dropped bits) / 2^16 from 16 counter-based random bits per element and moment
// (native/simd/convert.h: randomBitsOf(job.seed, i), i the index in the tensor; expAvg takes the
// low 16 bits, expAvgSq and maxExpAvgSq the high 16), so results do not depend on how a tensor is
// cut into threads or vectors.
#pragma once

#include <cstddef>
#include <cstdint>

#include "adamw-math.h"
#include "element-loop.h"
#include "lanes.h"
#include "op.h"

namespace simd_adamw {

struct AdamwBfloat16Op : AdamwFamily {
  static constexpr const char* kName = "adamwBfloat16";

  enum Array : size_t { kParam, kGrad, kExpAvg, kExpAvgSq, kMaxExpAvgSq, kParamBf16 };
  static constexpr const char* kArrays[] = {"param",    "grad",        "expAvg",
                                            "expAvgSq", "maxExpAvgSq", "paramBf16"};
  static constexpr ArrayType kArrayTypes[] = {ArrayType::kFloat32,  ArrayType::kGrad,
                                              ArrayType::kBfloat16, ArrayType::kBfloat16,
                                              ArrayType::kBfloat16, ArrayType::kBfloat16};
  static constexpr ArrayLength kArrayLengths[] = {ArrayLength::kParam, ArrayLength::kParam,
                                                  ArrayLength::kParam, ArrayLength::kParam,
                                                  ArrayLength::kParam, ArrayLength::kParam};
  static constexpr size_t kBlockSize = 1;
  static constexpr OpOptionalArray kOptionalArrays[] = {{kMaxExpAvgSq, kAmsgrad, false},
                                                        {kParamBf16, kHasParamBf16, true}};
  static constexpr uint32_t kSeededFlag = kStochasticRounding;
  static constexpr uint32_t kKernelFlags = kCommonKernelFlags | kStochasticRounding;

  template <class F32, uint32_t kFlags>
  static void run(const Job& job, size_t begin, size_t end);
};

// The bf16 stores canonicalize NaN in their rounding; only the float32 param needs the test (see
// native/ops/adamw.h).
template <class F32, uint32_t kFlags>
void AdamwBfloat16Op::run(const Job& job, size_t begin, size_t end) {
  using L = Lanes<F32>;
  using V = typename F32::V;
  constexpr GradDtype kGradDtype = gradDtypeOf(kFlags);
  constexpr bool kWithMax = (kFlags & kAmsgrad) != 0;
  constexpr bool kWithParamBf16 = (kFlags & kHasParamBf16) != 0;
  constexpr bool kStochastic = (kFlags & kStochasticRounding) != 0;
  float* const param = static_cast<float*>(job.arrays[kParam]);
  const void* const grad = job.arrays[kGrad];
  uint16_t* const expAvg = static_cast<uint16_t*>(job.arrays[kExpAvg]);
  uint16_t* const expAvgSq = static_cast<uint16_t*>(job.arrays[kExpAvgSq]);
  uint16_t* const maxExpAvgSq = static_cast<uint16_t*>(job.arrays[kMaxExpAvgSq]);
  uint16_t* const paramBf16 = static_cast<uint16_t*>(job.arrays[kParamBf16]);
  const uint32_t key = job.seed;
  const size_t offset = job.elementOffset;
  const AdamwBroadcast<F32> c(job.scalars);
  const auto vector = [=, &c](size_t i, auto tag) {
    const V g = L::template loadGrad<kGradDtype>(grad, i, tag);
    const V oldMax = kWithMax ? L::loadBf16(maxExpAvgSq + i, tag) : g;
    const AdamwResult<F32> r =
        adamwMath<F32, kFlags>(c, g, L::load(param + i, tag), L::loadBf16(expAvg + i, tag),
                               L::loadBf16(expAvgSq + i, tag), oldMax);
    if (kStochastic) {
      const typename F32::U random = F32::randomBits(key, offset + i);
      const typename F32::U low = F32::low16(random);
      const typename F32::U high = F32::high16(random);
      L::storeBf16Stochastic(expAvg + i, r.expAvg, low, tag);
      L::storeBf16Stochastic(expAvgSq + i, r.expAvgSq, high, tag);
      if (kWithMax) L::storeBf16Stochastic(maxExpAvgSq + i, r.secondMoment, high, tag);
    } else {
      L::storeBf16(expAvg + i, r.expAvg, tag);
      L::storeBf16(expAvgSq + i, r.expAvgSq, tag);
      if (kWithMax) L::storeBf16(maxExpAvgSq + i, r.secondMoment, tag);
    }
    if (__builtin_expect(F32::anyNan(r.param), 0)) {
      L::store(param + i, F32::canonicalizeNan(r.param), tag);
    } else {
      L::store(param + i, r.param, tag);
    }
    if (kWithParamBf16) L::storeBf16(paramBf16 + i, r.param, tag);
  };
  const auto prefetch = [=](size_t i) {
    prefetchAhead(param, i);
    prefetchGradAhead<kGradDtype>(grad, i);
    prefetchAhead(expAvg, i);
    prefetchAhead(expAvgSq, i);
    if (kWithMax) prefetchAhead(maxExpAvgSq, i);
    if (kWithParamBf16) prefetchAhead(paramBf16, i);
  };
  forEachVector<F32>(begin, end, vector, prefetch);
}

}  // namespace simd_adamw
