// The fused training step: the global gradient norm, the non-finite skip, clipping and loss-scale
// unscaling around one step of an op, decided natively so that the whole sequence is one call (and
// one asynchronous job for runPlanAsync). Clipping and unscaling are a single factor the op applies
// while it reads each gradient (the op's scaleGrad flag): no pass over the gradients of their own,
// and no write to them.
#pragma once

#include <cstdint>

#include "ops/sum-squares.h"
#include "runner.h"

namespace simd_adamw {

// What the caller asks for (read from control, native/control.h). lib/ validated every value.
struct TrainStepRequest {
  // torch.nn.utils.clip_grad_norm_(max_norm, norm_type=2): when the norm of the unscaled gradients
  // exceeds it, they are multiplied by maxNorm / (norm + 1e-6). +Inf: no clipping.
  double maxNorm;
  // The factor the gradients carry (a scaled loss); the step divides it out. 1: none.
  double gradScale;
  // Measure the norm even without clipping or skipping (lib/ reports it).
  bool measureNorm;
  // If any gradient is NaN or Inf, change nothing.
  bool skipNonFinite;
  // Measure nothing and use float(gradFactor) (finite) as the gradient factor: a caller that
  // computed the factor itself, from a norm measured elsewhere (lib/distributed's ZeRO-1 ranks
  // each hold a part of the gradients, and the norm is of all of them). The fields above are
  // then not read.
  bool givenGradFactor = false;
  double gradFactor = 1.0;
};

struct TrainStepResult {
  // L2 norm of the unscaled gradients, sqrt(sum of squares) / gradScale; NaN if not measured.
  double gradNorm;
  // What each gradient is multiplied by, as the kernel sees it (float32; 1 when not applied).
  float gradFactor;
  bool skipped;
  bool clipped;
  // The first tensor whose gradient holds a NaN or Inf, or -1 (only known when measured).
  int64_t nonFiniteTensor;
};

// Measures what `request` needs over the 'grad' arrays (arrays[1]) of `list`'s jobs, with
// `sumSquares` (one kernel per GradDtype) on up to `threads` threads, and decides: skip, or run
// with gradFactor (1 means the plain kernel, bit for bit the unfused step).
//
// The clip coefficient and the gradient factor are computed in double and the factor is rounded
// to float32 once: gradFactor = float(clipCoef / gradScale). torch instead multiplies the stored
// gradient by float(1 / gradScale) and then by float(clipCoef), two roundings; the results are the
// same when gradScale is a power of two (GradScaler's always are) and differ by at most about one
// float32 ulp of g otherwise. As in torch (clip_grad_norm_ with error_if_nonfinite=False, whose
// clamp(max=1) keeps a NaN), a non-finite norm without skipNonFinite still clips: a NaN norm makes
// every gradient NaN, an infinite one multiplies them by 0.
//
// With request.givenGradFactor nothing is measured: gradFactor = float(request.gradFactor), exactly
// what a computed factor of that double would give (so a caller that computes clipCoef / gradScale
// as above, from the same norm, gets the same bits), gradNorm NaN, nonFiniteTensor -1.
TrainStepResult decideTrainStep(const JobList& list, const SumSquaresKernel* sumSquares,
                                unsigned threads, const TrainStepRequest& request);

}  // namespace simd_adamw
