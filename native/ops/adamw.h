// The adamw op: AdamW/Adam with float32 state (what native.ops.adamw exports to lib/), a thin
// driver around the shared float32 math (native/ops/adamw-math.h). The gradient may be float32,
// bf16 or fp16 (widened in the loop) and the tensor may have a bf16 copy of the param to write.
#pragma once

#include <cstddef>
#include <cstdint>

#include "adamw-math.h"
#include "element-loop.h"
#include "lanes.h"
#include "op.h"

namespace simd_adamw {

struct AdamwOp : AdamwFamily {
  static constexpr const char* kName = "adamw";

  enum Array : size_t { kParam, kGrad, kExpAvg, kExpAvgSq, kMaxExpAvgSq, kParamBf16 };
  static constexpr const char* kArrays[] = {"param",    "grad",        "expAvg",
                                            "expAvgSq", "maxExpAvgSq", "paramBf16"};
  static constexpr ArrayType kArrayTypes[] = {ArrayType::kFloat32, ArrayType::kGrad,
                                              ArrayType::kFloat32, ArrayType::kFloat32,
                                              ArrayType::kFloat32, ArrayType::kBfloat16};
  static constexpr ArrayLength kArrayLengths[] = {ArrayLength::kParam, ArrayLength::kParam,
                                                  ArrayLength::kParam, ArrayLength::kParam,
                                                  ArrayLength::kParam, ArrayLength::kParam};
  static constexpr size_t kBlockSize = 1;
  static constexpr OpOptionalArray kOptionalArrays[] = {{kMaxExpAvgSq, kAmsgrad, false},
                                                        {kParamBf16, kHasParamBf16, true}};
  static constexpr uint32_t kSeededFlag = 0;
  static constexpr uint32_t kKernelFlags = kCommonKernelFlags;

  template <class F32, uint32_t kFlags>
  static void run(const Job& job, size_t begin, size_t end);
};

// NaN canonicalization costs a compare and a blend per stored vector, about a sixth of the loop's
// instructions, for a value that is almost never NaN. It is not needed per array: the new param is
// param * decay + negStepSize * (expAvg / (sqrt(s) + epsHat)) with s = expAvgSq or the AMSGrad max
// of it, and an IEEE add, mul, div or sqrt with a NaN operand returns NaN. So whenever the new
// expAvg, expAvgSq or max (all of them operands of that expression) holds a NaN in some lane, the
// new param holds a NaN in that lane too. One test of the param vector therefore decides: no NaN
// there means nothing stored is NaN, and the stores need no canonicalization (it would be the
// identity); a NaN there (rare: a NaN gradient or state, or a padding lane of the tail) takes the
// slow path, which canonicalizes every stored vector. The stored bits are identical either way, on
// every ISA. (The bf16 copy of the param canonicalizes in its own rounding.)
template <class F32, uint32_t kFlags>
void AdamwOp::run(const Job& job, size_t begin, size_t end) {
  using L = Lanes<F32>;
  constexpr GradDtype kGradDtype = gradDtypeOf(kFlags);
  constexpr bool kWithMax = (kFlags & kAmsgrad) != 0;
  constexpr bool kWithParamBf16 = (kFlags & kHasParamBf16) != 0;
  // Copied out of the Job: the loop stores through pointers the compiler cannot tell apart from
  // the caller's Job, so it would reload the array pointers on every vector.
  float* const param = static_cast<float*>(job.arrays[kParam]);
  const void* const grad = job.arrays[kGrad];
  float* const expAvg = static_cast<float*>(job.arrays[kExpAvg]);
  float* const expAvgSq = static_cast<float*>(job.arrays[kExpAvgSq]);
  float* const maxExpAvgSq = static_cast<float*>(job.arrays[kMaxExpAvgSq]);
  uint16_t* const paramBf16 = static_cast<uint16_t*>(job.arrays[kParamBf16]);
  const AdamwBroadcast<F32> c(job.scalars);
  const auto vector = [=, &c](size_t i, auto tag) {
    const typename F32::V g = L::template loadGrad<kGradDtype>(grad, i, tag);
    const typename F32::V oldMax = kWithMax ? L::load(maxExpAvgSq + i, tag) : g;
    const AdamwResult<F32> r =
        adamwMath<F32, kFlags>(c, g, L::load(param + i, tag), L::load(expAvg + i, tag),
                               L::load(expAvgSq + i, tag), oldMax);
    if (__builtin_expect(F32::anyNan(r.param), 0)) {
      if (kWithMax) L::store(maxExpAvgSq + i, F32::canonicalizeNan(r.secondMoment), tag);
      L::store(expAvg + i, F32::canonicalizeNan(r.expAvg), tag);
      L::store(expAvgSq + i, F32::canonicalizeNan(r.expAvgSq), tag);
      L::store(param + i, F32::canonicalizeNan(r.param), tag);
    } else {
      if (kWithMax) L::store(maxExpAvgSq + i, r.secondMoment, tag);
      L::store(expAvg + i, r.expAvg, tag);
      L::store(expAvgSq + i, r.expAvgSq, tag);
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
