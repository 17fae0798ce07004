// The gradient norm's block sums (native/grad-norm.h gives the canonical order they follow),
// written once over the float64 part of the vector layer (native/simd/<isa>.h) and compiled for
// every ISA by native/kernels/kernels.cc.
//
// The 16 partial sums of the canonical order live in 16 / kWidth vectors: vector k, lane j holds
// partial k * kWidth + j, which receives the elements i with i % 16 == k * kWidth + j. So every ISA
// performs exactly the additions of the canonical order, in its order, whatever its width; the
// tree that combines the partials runs on stored doubles, the same code for all.
//
// Blocks are independent, so kBlocksAtOnce of them are summed in one loop, each with its own
// partials: the same additions per block, but several memory streams and independent addition
// chains in flight. One block at a time reads a single stream and waits on the 16 partials' chains;
// four at a time is about twice as fast from memory on AVX-512 (measured on the development
// machine, 16M floats).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../simd/convert.h"
#include "op.h"

namespace simd_adamw {

constexpr size_t kSumSquaresBlock = 4096;
constexpr size_t kSumSquaresPartials = 16;

// Writes the sum of squares of each block of data[0, length) to sums[0, ceil(length /
// kSumSquaresBlock)), each in the canonical order of one block; every block is full but the last.
// `data` is the start of a block of its tensor, of one gradient dtype (one kernel per dtype: a bf16
// or fp16 element is widened to float32 exactly first, so its square is that of the widened
// float). A NaN sum may have any NaN bits; sumOfSquares canonicalizes it.
using SumSquaresKernel = void (*)(const void* data, size_t length, double* sums);

}  // namespace simd_adamw

namespace simd_adamw {
namespace {

// The canonical tree: halves folded onto each other, 16 -> 8 -> 4 -> 2 -> 1.
inline double combinePartials(double (&partials)[kSumSquaresPartials]) {
  for (size_t half = kSumSquaresPartials / 2; half >= 1; half /= 2) {
    for (size_t j = 0; j < half; ++j) partials[j] = partials[j] + partials[j + half];
  }
  return partials[0];
}

// Adds the squares of the 16 floats at p to the 16 partials.
template <class F64>
inline void addSquares(const float* p,
                       typename F64::V (&partials)[kSumSquaresPartials / F64::kWidth]) {
  for (size_t k = 0; k < kSumSquaresPartials / F64::kWidth; ++k) {
    const typename F64::V x = F64::loadWiden(p + k * F64::kWidth);
    partials[k] = F64::add(partials[k], F64::mul(x, x));
  }
}

// The first n (<= 16) elements of a gradient of dtype kDtype at element offset i, widened to
// float32 into `out`; the rest of `out` is +0.
template <GradDtype kDtype>
inline void widenGrad(const void* data, size_t i, size_t n, float (&out)[kSumSquaresPartials]) {
  if (kDtype == kGradFloat32) {
    std::memcpy(out, static_cast<const float*>(data) + i, n * sizeof(float));
  } else {
    const uint16_t* p = static_cast<const uint16_t*>(data) + i;
    for (size_t j = 0; j < n; ++j) {
      out[j] = floatOfBits(kDtype == kGradBfloat16 ? widenBf16(p[j]) : widenF16(p[j]));
    }
  }
  for (size_t j = n; j < kSumSquaresPartials; ++j) out[j] = 0.0f;
}

// Adds the squares of the 16 elements at element offset i of `data` to the partials.
template <class F64, GradDtype kDtype>
inline void addGradSquares(const void* data, size_t i,
                           typename F64::V (&partials)[kSumSquaresPartials / F64::kWidth]) {
  if (kDtype == kGradFloat32) {
    addSquares<F64>(static_cast<const float*>(data) + i, partials);
  } else {
    float widened[kSumSquaresPartials];
    widenGrad<kDtype>(data, i, kSumSquaresPartials, widened);
    addSquares<F64>(widened, partials);
  }
}

// The partials of one block, combined.
template <class F64>
double combineVectors(const typename F64::V (&partials)[kSumSquaresPartials / F64::kWidth]) {
  double stored[kSumSquaresPartials];
  for (size_t k = 0; k < kSumSquaresPartials / F64::kWidth; ++k) {
    F64::store(stored + k * F64::kWidth, partials[k]);
  }
  return combinePartials(stored);
}

// kBlocks full blocks, starting at element `first` of data, side by side.
template <class F64, GradDtype kDtype, size_t kBlocks>
void sumFullBlocks(const void* data, size_t first, double* sums) {
  constexpr size_t kVectors = kSumSquaresPartials / F64::kWidth;
  typename F64::V partials[kBlocks][kVectors];
  for (size_t b = 0; b < kBlocks; ++b) {
    for (size_t k = 0; k < kVectors; ++k) partials[b][k] = F64::zero();
  }
  for (size_t i = 0; i < kSumSquaresBlock; i += kSumSquaresPartials) {
    for (size_t b = 0; b < kBlocks; ++b) {
      addGradSquares<F64, kDtype>(data, first + b * kSumSquaresBlock + i, partials[b]);
    }
  }
  for (size_t b = 0; b < kBlocks; ++b) sums[b] = combineVectors<F64>(partials[b]);
}

// One block of any length up to kSumSquaresBlock, starting at element `first` of data.
template <class F64, GradDtype kDtype>
double sumSquaresBlock(const void* data, size_t first, size_t length) {
  static_assert(kSumSquaresPartials % F64::kWidth == 0, "the partials fill whole vectors");
  constexpr size_t kVectors = kSumSquaresPartials / F64::kWidth;
  typename F64::V partials[kVectors];
  for (size_t k = 0; k < kVectors; ++k) partials[k] = F64::zero();
  size_t i = 0;
  for (; i + kSumSquaresPartials <= length; i += kSumSquaresPartials) {
    addGradSquares<F64, kDtype>(data, first + i, partials);
  }
  if (i < length) {
    // The last few elements, zero-padded to 16: each padding lane adds +0 to a partial, which
    // leaves it unchanged (a partial is never -0: it starts at +0 and only adds squares).
    float tail[kSumSquaresPartials];
    widenGrad<kDtype>(data, first + i, length - i, tail);
    addSquares<F64>(tail, partials);
  }
  return combineVectors<F64>(partials);
}

// The kernel (SumSquaresKernel): the sums of the blocks of data[0, length), all full but the last.
template <class F64, GradDtype kDtype>
void sumSquaresBlocks(const void* data, size_t length, double* sums) {
  const size_t fullBlocks = length / kSumSquaresBlock;
  size_t b = 0;
  for (; b + F64::kBlocksAtOnce <= fullBlocks; b += F64::kBlocksAtOnce) {
    sumFullBlocks<F64, kDtype, F64::kBlocksAtOnce>(data, b * kSumSquaresBlock, sums + b);
  }
  for (; b < fullBlocks; ++b) sumFullBlocks<F64, kDtype, 1>(data, b * kSumSquaresBlock, sums + b);
  if (length % kSumSquaresBlock != 0) {
    sums[b] = sumSquaresBlock<F64, kDtype>(data, b * kSumSquaresBlock, length % kSumSquaresBlock);
  }
}

}  // namespace
}  // namespace simd_adamw
