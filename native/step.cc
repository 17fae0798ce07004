// See step.h.
#include "step.h"

#include <algorithm>

#include "thread-pool.h"

namespace simd_adamw {

unsigned threadsFor(size_t totalElements, unsigned threads) {
  const size_t byWork = std::max<size_t>(1, totalElements / kMinElementsPerThread);
  const size_t capped = std::min<size_t>({byWork, threads, ThreadPool::kMaxThreads});
  return static_cast<unsigned>(std::max<size_t>(1, capped));
}

void runStep(const std::vector<StepJob>& jobs, AdamwKernel kernel, unsigned threads) {
  // firstElement[k]: where job k starts in the jobs' elements laid end to end.
  std::vector<size_t> firstElement(jobs.size() + 1, 0);
  for (size_t k = 0; k < jobs.size(); ++k) {
    firstElement[k + 1] = firstElement[k] + jobs[k].tensor.length;
  }
  const size_t total = firstElement.back();
  const unsigned used = threadsFor(total, threads);
  // The cut points depend only on the part count (partsFor, step.h), and each element is computed
  // the same way whichever thread takes it.
  const unsigned parts = partsFor(used);

  ThreadPool::instance().run(parts, used, [&](unsigned part) {
    const size_t begin = total * part / parts;
    const size_t end = total * (part + 1) / parts;
    // The last job starting at or before `begin`, then every job overlapping [begin, end).
    size_t k =
        static_cast<size_t>(std::upper_bound(firstElement.begin(), firstElement.end() - 1, begin) -
                            firstElement.begin());
    k = k == 0 ? 0 : k - 1;
    for (; k < jobs.size() && firstElement[k] < end; ++k) {
      const size_t jobBegin = std::max(begin, firstElement[k]) - firstElement[k];
      const size_t jobEnd = std::min(end, firstElement[k + 1]) - firstElement[k];
      if (jobBegin < jobEnd)
        kernel(jobs[k].tensor, jobs[k].scalars, jobs[k].flags, jobBegin, jobEnd);
    }
  });
}

}  // namespace simd_adamw
