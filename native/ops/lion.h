// The lion op: Lion with float32 state (native.ops.lion), a thin driver around the shared float32
// math (native/ops/lion-math.h). The gradient may be float32, bf16 or fp16 (widened in the loop)
// and the tensor may have a bf16 copy of the param to write. 20 bytes of traffic per element with
// float32 gradients (read param, grad, expAvg; write param, expAvg).
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "element-loop.h"
#include "lanes.h"
#include "lion-math.h"
#include "op.h"

namespace simd_adamw {

struct LionOp : LionFamily {
  static constexpr const char* kName = "lion";

  enum Array : size_t { kParam, kGrad, kExpAvg, kParamBf16 };
  static constexpr const char* kArrays[] = {"param", "grad", "expAvg", "paramBf16"};
  static constexpr ArrayType kArrayTypes[] = {ArrayType::kFloat32, ArrayType::kGrad,
                                              ArrayType::kFloat32, ArrayType::kBfloat16};
  static constexpr ArrayLength kArrayLengths[] = {ArrayLength::kParam, ArrayLength::kParam,
                                                  ArrayLength::kParam, ArrayLength::kParam};
  static constexpr size_t kBlockSize = 1;
  static constexpr OpOptionalArray kOptionalArrays[] = {{kParamBf16, kHasParamBf16, true}};
  static constexpr uint32_t kSeededFlag = 0;
  static constexpr uint32_t kKernelFlags = kCommonKernelFlags;

  template <class F32, uint32_t kFlags>
  static void run(const Job& job, size_t begin, size_t end);
};

// The driver of lion and lionBfloat16 (native/ops/lion-bfloat16.h), which differ only in the
// element type of expAvg: float (float32) or uint16_t (bf16 bits, rounded to nearest even or, with
// kStochasticRounding, stochastically).
//
// As in native/ops/adamw.h, NaN canonicalization is paid only by vectors that hold a NaN. The bf16
// store canonicalizes in its rounding, so with bf16 state only the param needs the test; with
// float32 state the new param does not witness every NaN (the new expAvg, beta2 * m +
// oneMinusBeta2 * g, is not an operand of it), so the test is on param + expAvg: NaN whenever
// either is (and, harmlessly, for Inf + -Inf, which then takes the slow path and stores the same
// bits).
template <class F32, uint32_t kFlags, class State>
void lionElementwise(const Job& job, size_t begin, size_t end) {
  using L = Lanes<F32>;
  using V = typename F32::V;
  constexpr bool kBf16State = std::is_same<State, uint16_t>::value;
  static_assert(kBf16State || std::is_same<State, float>::value, "float32 or bf16 state");
  constexpr GradDtype kGradDtype = LionFamily::gradDtypeOf(kFlags);
  constexpr bool kWithParamBf16 = (kFlags & LionFamily::kHasParamBf16) != 0;
  constexpr bool kStochastic = (kFlags & LionFamily::kStochasticRounding) != 0;
  // Copied out of the Job (see native/ops/adamw.h).
  float* const param = static_cast<float*>(job.arrays[LionOp::kParam]);
  const void* const grad = job.arrays[LionOp::kGrad];
  State* const expAvg = static_cast<State*>(job.arrays[LionOp::kExpAvg]);
  uint16_t* const paramBf16 = static_cast<uint16_t*>(job.arrays[LionOp::kParamBf16]);
  const uint32_t key = job.seed;
  const size_t offset = job.elementOffset;
  const LionBroadcast<F32> c(job.scalars);
  const auto vector = [=, &c](size_t i, auto tag) {
    const V g = L::template loadGrad<kGradDtype>(grad, i, tag);
    const V p = L::load(param + i, tag);
    if constexpr (kBf16State) {
      const LionResult<F32> r = lionMath<F32, kFlags>(c, g, p, L::loadBf16(expAvg + i, tag));
      if (kStochastic) {
        L::storeBf16Stochastic(expAvg + i, r.expAvg, F32::low16(F32::randomBits(key, offset + i)),
                               tag);
      } else {
        L::storeBf16(expAvg + i, r.expAvg, tag);
      }
      if (__builtin_expect(F32::anyNan(r.param), 0)) {
        L::store(param + i, F32::canonicalizeNan(r.param), tag);
      } else {
        L::store(param + i, r.param, tag);
      }
      if (kWithParamBf16) L::storeBf16(paramBf16 + i, r.param, tag);
    } else {
      const LionResult<F32> r = lionMath<F32, kFlags>(c, g, p, L::load(expAvg + i, tag));
      if (__builtin_expect(F32::anyNan(F32::add(r.param, r.expAvg)), 0)) {
        L::store(expAvg + i, F32::canonicalizeNan(r.expAvg), tag);
        L::store(param + i, F32::canonicalizeNan(r.param), tag);
      } else {
        L::store(expAvg + i, r.expAvg, tag);
        L::store(param + i, r.param, tag);
      }
      if (kWithParamBf16) L::storeBf16(paramBf16 + i, r.param, tag);
    }
  };
  const auto prefetch = [=](size_t i) {
    prefetchAhead(param, i);
    prefetchGradAhead<kGradDtype>(grad, i);
    prefetchAhead(expAvg, i);
    if (kWithParamBf16) prefetchAhead(paramBf16, i);
  };
  forEachVector<F32>(begin, end, vector, prefetch);
}

template <class F32, uint32_t kFlags>
void LionOp::run(const Job& job, size_t begin, size_t end) {
  lionElementwise<F32, kFlags, float>(job, begin, end);
}

}  // namespace simd_adamw
