// See train-step.h.
#include "train-step.h"

#include <cmath>
#include <limits>

#include "grad-norm.h"

namespace simd_adamw {
namespace {

// torch.nn.utils.clip_grad_norm_'s guard against division by a zero norm.
constexpr double kClipEpsilon = 1e-6;

}  // namespace

TrainStepResult runTrainStep(std::vector<StepJob>& jobs, const IsaInfo& isa, unsigned threads,
                             const TrainStepRequest& request) {
  TrainStepResult result{std::numeric_limits<double>::quiet_NaN(), 1.0f, false, false, -1};
  const bool clip = request.maxNorm < std::numeric_limits<double>::infinity();
  double factor = 1.0 / request.gradScale;

  if (request.measureNorm || request.skipNonFinite || clip) {
    std::vector<FloatSpan> grads;
    grads.reserve(jobs.size());
    for (const StepJob& job : jobs) grads.push_back(FloatSpan{job.tensor.grad, job.tensor.length});
    std::vector<double> perTensor;
    const double sumSquares = sumOfSquares(grads, isa.sumSquares, threads, &perTensor);
    result.gradNorm = std::sqrt(sumSquares) / request.gradScale;
    if (!std::isfinite(sumSquares)) {
      for (size_t k = 0; k < perTensor.size() && result.nonFiniteTensor < 0; ++k) {
        if (!std::isfinite(perTensor[k])) result.nonFiniteTensor = static_cast<int64_t>(k);
      }
      if (request.skipNonFinite) {
        result.skipped = true;
        return result;
      }
    }
    if (clip) {
      const double clipCoef = request.maxNorm / (result.gradNorm + kClipEpsilon);
      // Applied when below 1, and when NaN (torch's clamp(max=1) passes a NaN through).
      if (!(clipCoef >= 1.0)) {
        result.clipped = true;
        factor = clipCoef / request.gradScale;
      }
    }
  }

  result.gradFactor = static_cast<float>(factor);
  // A factor of exactly 1 leaves the plain kernel, bit for bit the unfused step.
  if (!(result.gradFactor == 1.0f)) {
    for (StepJob& job : jobs) {
      job.flags |= kAdamwScaleGrad;
      job.scalars.gradFactor = result.gradFactor;
    }
  }
  runStep(jobs, isa.kernel, threads);
  return result;
}

}  // namespace simd_adamw
