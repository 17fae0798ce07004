// The global gradient norm's reduction (its per-ISA block sums are native/ops/sum-squares.h): the
// sum of squares of float32 gradients (bf16 and fp16 ones widened to float32 first, exactly),
// accumulated in double precision in one canonical order, so that every ISA and every thread count
// gives the same bits (clipping decides from it, and a norm that changed with the machine would
// change training).
//
// The canonical order, independent of vector width and threads:
//   - each tensor is cut into blocks of kSumSquaresBlock elements, counted from its first element
//     (the last block may be shorter);
//   - within a block, element i is added to partial sum i % kSumSquaresPartials, in increasing i,
//     each partial starting from +0; the 16 partials are then added in a fixed tree, halves folded
//     onto each other: p[j] += p[j + 8] (j < 8), p[j] += p[j + 4] (j < 4), p[j] += p[j + 2]
//     (j < 2), p[0] += p[1];
//   - a tensor's sum is 0 plus its block sums in block order; the total is 0 plus the tensor sums
//     in tensor order.
// Each square is exact: a float32 has a 24-bit significand, so its square fits the 53 bits of a
// double, and float32 exponents squared stay far inside double's range. Only the additions round.
// A NaN or Inf anywhere makes the sum NaN or +Inf, and nothing else can: squares of finite floats
// are below 2^256, and even 2^53 of them sum to a finite double. So the same pass also detects
// non-finite gradients. Every NaN result is stored as the canonical quiet NaN.
#pragma once

#include <cstddef>
#include <vector>

#include "ops/op.h"
#include "ops/sum-squares.h"

namespace simd_adamw {

// A read-only run of gradient elements: one tensor's gradient, of one dtype.
struct GradSpan {
  const void* data;
  size_t length;
  GradDtype dtype;
};

// The sum of squares of every element of every span, in the canonical order, on up to `threads`
// threads (blocks are computed independently, then added in order, so the thread count never
// changes a bit). If `perSpan` is not null it receives each span's own sum (how lib/ names the
// tensor that made the total non-finite, without a second pass).
// `kernels` is one ISA's block-sum kernel per GradDtype.
double sumOfSquares(const std::vector<GradSpan>& spans, const SumSquaresKernel* kernels,
                    unsigned threads, std::vector<double>* perSpan);

}  // namespace simd_adamw
