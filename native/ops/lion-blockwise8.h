// The lionBlockwise8 op: Lion with expAvg in bitsandbytes' 8-bit blockwise format (about 1.02
// bytes of state per param): one code byte per element (the signed dynamic map) and one float32
// absmax per block of 256 elements counted from the tensor's start (native/ops/blockwise8-codes.h).
// Per block: dequantize expAvg into a float32 buffer on the stack, run the shared float32 math
// (native/ops/lion-math.h) over it, write the param (and its bf16 copy), then quantize the buffer
// back with a new absmax. The runner hands this kernel whole blocks (blockSize), so a tensor cut
// into threads quantizes the same blocks.
//
// The non-finite rule of adamwBlockwise8: an element whose new expAvg is not finite keeps its
// param unchanged (no decay either) and gets state 0, so that one NaN or Inf cannot become its
// block's absmax. That covers a NaN or Inf gradient: oneMinusBeta2 * g is then NaN or +-Inf (0 *
// Inf is NaN), and so is the new expAvg.
#pragma once

#include <cstddef>
#include <cstdint>

#include "blockwise8-codes.h"
#include "element-loop.h"
#include "lanes.h"
#include "lion-math.h"
#include "op.h"

namespace simd_adamw {

struct LionBlockwise8Op : LionFamily {
  static constexpr const char* kName = "lionBlockwise8";

  enum Array : size_t { kParam, kGrad, kExpAvg, kExpAvgAbsmax, kParamBf16 };
  static constexpr const char* kArrays[] = {"param", "grad", "expAvg", "expAvgAbsmax", "paramBf16"};
  static constexpr ArrayType kArrayTypes[] = {ArrayType::kFloat32, ArrayType::kGrad,
                                              ArrayType::kUint8, ArrayType::kFloat32,
                                              ArrayType::kBfloat16};
  static constexpr ArrayLength kArrayLengths[] = {ArrayLength::kParam, ArrayLength::kParam,
                                                  ArrayLength::kParam, ArrayLength::kBlocks,
                                                  ArrayLength::kParam};
  static constexpr size_t kBlockSize = kBlockwise8Block;
  static constexpr OpOptionalArray kOptionalArrays[] = {{kParamBf16, kHasParamBf16, true}};
  static constexpr uint32_t kSeededFlag = 0;
  static constexpr uint32_t kKernelFlags = kCommonKernelFlags;

  template <class F32, uint32_t kFlags>
  static void run(const Job& job, size_t begin, size_t end);
};

template <class F32, uint32_t kFlags>
void LionBlockwise8Op::run(const Job& job, size_t begin, size_t end) {
  using L = Lanes<F32>;
  using V = typename F32::V;
  constexpr GradDtype kGradDtype = gradDtypeOf(kFlags);
  constexpr bool kWithParamBf16 = (kFlags & kHasParamBf16) != 0;
  float* const param = static_cast<float*>(job.arrays[kParam]);
  const void* const grad = job.arrays[kGrad];
  uint8_t* const expAvgCodes = static_cast<uint8_t*>(job.arrays[kExpAvg]);
  float* const expAvgAbsmax = static_cast<float*>(job.arrays[kExpAvgAbsmax]);
  uint16_t* const paramBf16 = static_cast<uint16_t*>(job.arrays[kParamBf16]);
  const DynamicMap& signedMap = signedDynamicMap();
  const LionBroadcast<F32> c(job.scalars);
  const V zero = F32::set1(0.0f);

  float expAvg[kBlockwise8Block];  // one block's expAvg, widened, updated in place
  for (size_t start = begin; start < end; start += kBlockwise8Block) {
    const size_t block = start / kBlockwise8Block;
    const size_t n = end - start < kBlockwise8Block ? end - start : kBlockwise8Block;
    prefetchBlockAhead<kGradDtype, kBlockwise8Block>(start, end, param, grad, paramBf16,
                                                     expAvgCodes);
    dequantizeBlock(signedMap, expAvgCodes + start, expAvgAbsmax[block], n, expAvg);
    const auto vector = [&](size_t j, auto tag) {
      const size_t i = start + j;
      const V oldParam = L::load(param + i, tag);
      const LionResult<F32> r = lionMath<F32, kFlags>(
          c, L::template loadGrad<kGradDtype>(grad, i, tag), oldParam, L::load(expAvg + j, tag));
      const V nonFinite = F32::mul(zero, r.expAvg);  // NaN exactly where expAvg is NaN or Inf
      const V newParam = F32::canonicalizeNan(F32::selectWhereNan(nonFinite, oldParam, r.param));
      L::store(param + i, newParam, tag);
      if (kWithParamBf16) L::storeBf16(paramBf16 + i, newParam, tag);
      L::store(expAvg + j, F32::selectWhereNan(nonFinite, zero, r.expAvg), tag);
    };
    forEachVectorShort<F32>(0, n, vector);
    expAvgAbsmax[block] = quantizeBlock(signedMap, expAvg, n, expAvgCodes + start);
  }
}

}  // namespace simd_adamw
