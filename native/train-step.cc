// See train-step.h.
#include "train-step.h"

#include <cmath>
#include <limits>
#include <vector>

#include "grad-norm.h"

namespace simd_adamw {
namespace {

// torch.nn.utils.clip_grad_norm_'s guard against division by a zero norm.
constexpr double kClipEpsilon = 1e-6;

}  // namespace

TrainStepResult decideTrainStep(const JobList& list, const SumSquaresKernel* sumSquares,
                                unsigned threads, const TrainStepRequest& request) {
  TrainStepResult result{std::numeric_limits<double>::quiet_NaN(), 1.0f, false, false, -1};
  if (request.givenGradFactor) {
    // The one rounding the computed factor takes below, from the caller's double.
    result.gradFactor = static_cast<float>(request.gradFactor);
    return result;
  }
  const bool clip = request.maxNorm < std::numeric_limits<double>::infinity();
  double factor = 1.0 / request.gradScale;

  if (request.measureNorm || request.skipNonFinite || clip) {
    std::vector<GradSpan> grads;
    grads.reserve(list.jobs.size());
    for (const Job& job : list.jobs)
      grads.push_back(GradSpan{job.arrays[1], job.length, job.gradDtype});
    std::vector<double> perTensor;
    const double sum = sumOfSquares(grads, sumSquares, threads, &perTensor);
    result.gradNorm = std::sqrt(sum) / request.gradScale;
    if (!std::isfinite(sum)) {
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
  return result;
}

}  // namespace simd_adamw
