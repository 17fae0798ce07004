// The block sums of the gradient norm's sum of squares (native/grad-norm.h), written once over an
// abstract vector of doubles and instantiated by every ISA's grad-norm-<isa>.cc, like
// adamw-loop.h for the update.
//
// A kernel file defines a `Lanes` struct and includes this header. Lanes supplies:
//   kWidth                 doubles per vector; divides kSumSquaresPartials
//   kBlocksAtOnce          full blocks summed side by side (as many as the registers hold)
//   V                      the vector type
//   zero()                 all lanes +0
//   loadWiden(p)           kWidth floats from p (any alignment), each converted to double (exact)
//   add, mul               IEEE double, each rounded once (no fused multiply-add)
//   store(p, v)            kWidth doubles to p
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
//
// Everything here has internal linkage, for the reason given in adamw-loop.h.
#pragma once

#include <cstddef>
#include <cstring>

#include "../grad-norm.h"

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
template <class Lanes>
inline void addSquares(const float* p,
                       typename Lanes::V (&partials)[kSumSquaresPartials / Lanes::kWidth]) {
  for (size_t k = 0; k < kSumSquaresPartials / Lanes::kWidth; ++k) {
    const typename Lanes::V x = Lanes::loadWiden(p + k * Lanes::kWidth);
    partials[k] = Lanes::add(partials[k], Lanes::mul(x, x));
  }
}

// The partials of one block, combined.
template <class Lanes>
double combineVectors(const typename Lanes::V (&partials)[kSumSquaresPartials / Lanes::kWidth]) {
  double stored[kSumSquaresPartials];
  for (size_t k = 0; k < kSumSquaresPartials / Lanes::kWidth; ++k) {
    Lanes::store(stored + k * Lanes::kWidth, partials[k]);
  }
  return combinePartials(stored);
}

// kBlocks full blocks, starting at data, side by side.
template <class Lanes, size_t kBlocks>
void sumFullBlocks(const float* data, double* sums) {
  constexpr size_t kVectors = kSumSquaresPartials / Lanes::kWidth;
  typename Lanes::V partials[kBlocks][kVectors];
  for (size_t b = 0; b < kBlocks; ++b) {
    for (size_t k = 0; k < kVectors; ++k) partials[b][k] = Lanes::zero();
  }
  for (size_t i = 0; i < kSumSquaresBlock; i += kSumSquaresPartials) {
    for (size_t b = 0; b < kBlocks; ++b) {
      addSquares<Lanes>(data + b * kSumSquaresBlock + i, partials[b]);
    }
  }
  for (size_t b = 0; b < kBlocks; ++b) sums[b] = combineVectors<Lanes>(partials[b]);
}

// One block of any length up to kSumSquaresBlock.
template <class Lanes>
double sumSquaresBlock(const float* data, size_t length) {
  static_assert(kSumSquaresPartials % Lanes::kWidth == 0, "the partials fill whole vectors");
  constexpr size_t kVectors = kSumSquaresPartials / Lanes::kWidth;
  typename Lanes::V partials[kVectors];
  for (size_t k = 0; k < kVectors; ++k) partials[k] = Lanes::zero();
  size_t i = 0;
  for (; i + kSumSquaresPartials <= length; i += kSumSquaresPartials) {
    addSquares<Lanes>(data + i, partials);
  }
  if (i < length) {
    // The last few elements, zero-padded to 16: each padding lane adds +0 to a partial, which
    // leaves it unchanged (a partial is never -0: it starts at +0 and only adds squares).
    float tail[kSumSquaresPartials] = {};
    std::memcpy(tail, data + i, (length - i) * sizeof(float));
    addSquares<Lanes>(tail, partials);
  }
  return combineVectors<Lanes>(partials);
}

// The kernel (SumSquaresKernel): the sums of the blocks of data[0, length), all full but the last.
template <class Lanes>
void sumSquaresBlocks(const float* data, size_t length, double* sums) {
  const size_t fullBlocks = length / kSumSquaresBlock;
  size_t b = 0;
  for (; b + Lanes::kBlocksAtOnce <= fullBlocks; b += Lanes::kBlocksAtOnce) {
    sumFullBlocks<Lanes, Lanes::kBlocksAtOnce>(data + b * kSumSquaresBlock, sums + b);
  }
  for (; b < fullBlocks; ++b) sumFullBlocks<Lanes, 1>(data + b * kSumSquaresBlock, sums + b);
  if (length % kSumSquaresBlock != 0) {
    sums[b] = sumSquaresBlock<Lanes>(data + b * kSumSquaresBlock, length % kSumSquaresBlock);
  }
}

}  // namespace
}  // namespace simd_adamw
