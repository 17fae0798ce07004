// The adamwBlockwise8 op: AdamW/Adam with bitsandbytes' 8-bit blockwise state (about 2.03 bytes per
// param): each moment is one code byte per element and one float32 absmax per block of 256
// elements counted from the tensor's start (native/ops/blockwise8-codes.h has the format and the
// exact quantizer). Per block: dequantize the moments into float32 buffers on the stack, run the
// shared float32 math (native/ops/adamw-math.h) over them as the other ops do over their arrays,
// write the param (and its bf16 copy), then quantize the buffers back with a new absmax each. The
// runner hands this kernel whole blocks (blockSize), so a tensor cut into threads quantizes the
// same blocks.
//
// bitsandbytes' non-finite rule: one NaN or Inf in a block would become its absmax and destroy
// every other element's state, so an element whose new expAvg, expAvgSq or max is not finite (which
// is the case whenever its gradient is NaN or Inf: (1 - beta1) * g and (1 - beta2) * g * g are then
// not finite either) keeps its param unchanged (no decay either) and gets state 0.
#pragma once

#include <cstddef>
#include <cstdint>

#include "adamw-math.h"
#include "blockwise8-codes.h"
#include "element-loop.h"
#include "lanes.h"
#include "op.h"

namespace simd_adamw {

struct AdamwBlockwise8Op : AdamwFamily {
  static constexpr const char* kName = "adamwBlockwise8";

  enum Array : size_t {
    kParam,
    kGrad,
    kExpAvg,
    kExpAvgAbsmax,
    kExpAvgSq,
    kExpAvgSqAbsmax,
    kMaxExpAvgSq,
    kMaxExpAvgSqAbsmax,
    kParamBf16,
  };
  static constexpr const char* kArrays[] = {
      "param",    "grad",           "expAvg",      "expAvgAbsmax",
      "expAvgSq", "expAvgSqAbsmax", "maxExpAvgSq", "maxExpAvgSqAbsmax",
      "paramBf16"};
  static constexpr ArrayType kArrayTypes[] = {
      ArrayType::kFloat32, ArrayType::kGrad,    ArrayType::kUint8,
      ArrayType::kFloat32, ArrayType::kUint8,   ArrayType::kFloat32,
      ArrayType::kUint8,   ArrayType::kFloat32, ArrayType::kBfloat16};
  static constexpr ArrayLength kArrayLengths[] = {
      ArrayLength::kParam,  ArrayLength::kParam,  ArrayLength::kParam,
      ArrayLength::kBlocks, ArrayLength::kParam,  ArrayLength::kBlocks,
      ArrayLength::kParam,  ArrayLength::kBlocks, ArrayLength::kParam};
  static constexpr size_t kBlockSize = kBlockwise8Block;
  static constexpr OpOptionalArray kOptionalArrays[] = {{kMaxExpAvgSq, kAmsgrad, false},
                                                        {kMaxExpAvgSqAbsmax, kAmsgrad, false},
                                                        {kParamBf16, kHasParamBf16, true}};
  static constexpr uint32_t kSeededFlag = 0;
  static constexpr uint32_t kKernelFlags = kCommonKernelFlags;

  template <class F32, uint32_t kFlags>
  static void run(const Job& job, size_t begin, size_t end);
};

template <class F32, uint32_t kFlags>
void AdamwBlockwise8Op::run(const Job& job, size_t begin, size_t end) {
  using L = Lanes<F32>;
  using V = typename F32::V;
  constexpr GradDtype kGradDtype = gradDtypeOf(kFlags);
  constexpr bool kWithMax = (kFlags & kAmsgrad) != 0;
  constexpr bool kWithParamBf16 = (kFlags & kHasParamBf16) != 0;
  float* const param = static_cast<float*>(job.arrays[kParam]);
  const void* const grad = job.arrays[kGrad];
  uint8_t* const expAvgCodes = static_cast<uint8_t*>(job.arrays[kExpAvg]);
  float* const expAvgAbsmax = static_cast<float*>(job.arrays[kExpAvgAbsmax]);
  uint8_t* const expAvgSqCodes = static_cast<uint8_t*>(job.arrays[kExpAvgSq]);
  float* const expAvgSqAbsmax = static_cast<float*>(job.arrays[kExpAvgSqAbsmax]);
  uint8_t* const maxCodes = static_cast<uint8_t*>(job.arrays[kMaxExpAvgSq]);
  float* const maxAbsmax = static_cast<float*>(job.arrays[kMaxExpAvgSqAbsmax]);
  uint16_t* const paramBf16 = static_cast<uint16_t*>(job.arrays[kParamBf16]);
  const DynamicMap& signedMap = signedDynamicMap();
  const DynamicMap& unsignedMap = unsignedDynamicMap();
  const AdamwBroadcast<F32> c(job.scalars);
  const V zero = F32::set1(0.0f);

  // One block's moments, widened; the vectors of the block read and write them in place.
  float expAvg[kBlockwise8Block];
  float expAvgSq[kBlockwise8Block];
  float maxExpAvgSq[kBlockwise8Block];
  for (size_t start = begin; start < end; start += kBlockwise8Block) {
    const size_t block = start / kBlockwise8Block;
    const size_t n = end - start < kBlockwise8Block ? end - start : kBlockwise8Block;
    prefetchBlockAhead<kGradDtype, kBlockwise8Block>(start, end, param, grad, paramBf16,
                                                     expAvgCodes, expAvgSqCodes, maxCodes);
    dequantizeBlock(signedMap, expAvgCodes + start, expAvgAbsmax[block], n, expAvg);
    dequantizeBlock(unsignedMap, expAvgSqCodes + start, expAvgSqAbsmax[block], n, expAvgSq);
    if (kWithMax) dequantizeBlock(unsignedMap, maxCodes + start, maxAbsmax[block], n, maxExpAvgSq);
    const auto vector = [&](size_t j, auto tag) {
      const size_t i = start + j;
      const V g = L::template loadGrad<kGradDtype>(grad, i, tag);
      const V oldParam = L::load(param + i, tag);
      const V oldMax = kWithMax ? L::load(maxExpAvgSq + j, tag) : g;
      const AdamwResult<F32> r = adamwMath<F32, kFlags>(c, g, oldParam, L::load(expAvg + j, tag),
                                                        L::load(expAvgSq + j, tag), oldMax);
      // 0 * x is NaN exactly when x is NaN or Inf, and a sum of them NaN when any is.
      V nonFinite = F32::add(F32::mul(zero, r.expAvg), F32::mul(zero, r.expAvgSq));
      if (kWithMax) nonFinite = F32::add(nonFinite, F32::mul(zero, r.secondMoment));
      const V newParam = F32::canonicalizeNan(F32::selectWhereNan(nonFinite, oldParam, r.param));
      L::store(param + i, newParam, tag);
      if (kWithParamBf16) L::storeBf16(paramBf16 + i, newParam, tag);
      L::store(expAvg + j, F32::selectWhereNan(nonFinite, zero, r.expAvg), tag);
      L::store(expAvgSq + j, F32::selectWhereNan(nonFinite, zero, r.expAvgSq), tag);
      if (kWithMax)
        L::store(maxExpAvgSq + j, F32::selectWhereNan(nonFinite, zero, r.secondMoment), tag);
    };
    forEachVectorShort<F32>(0, n, vector);
    expAvgAbsmax[block] = quantizeBlock(signedMap, expAvg, n, expAvgCodes + start);
    expAvgSqAbsmax[block] = quantizeBlock(unsignedMap, expAvgSq, n, expAvgSqCodes + start);
    if (kWithMax) maxAbsmax[block] = quantizeBlock(unsignedMap, maxExpAvgSq, n, maxCodes + start);
  }
}

}  // namespace simd_adamw
