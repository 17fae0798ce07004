// See runner.h.
#include "runner.h"

#include <algorithm>

#include "thread-pool.h"

namespace simd_adamw {
namespace {

// The last job starting at or before `element` (empty jobs start where the next one does, and
// upper_bound steps past them).
size_t jobAt(const JobList& list, size_t element) {
  const auto& first = list.firstElement;
  const size_t k = static_cast<size_t>(std::upper_bound(first.begin(), first.end() - 1, element) -
                                       first.begin());
  return k == 0 ? 0 : k - 1;
}

}  // namespace

unsigned threadsFor(size_t totalElements, unsigned threads) {
  const size_t byWork = std::max<size_t>(1, totalElements / kMinElementsPerThread);
  const size_t capped = std::min<size_t>({byWork, threads, ThreadPool::kMaxThreads});
  return static_cast<unsigned>(std::max<size_t>(1, capped));
}

void JobList::layOut() {
  firstElement.assign(jobs.size() + 1, 0);
  for (size_t k = 0; k < jobs.size(); ++k) firstElement[k + 1] = firstElement[k] + jobs[k].length;
}

void runElementwise(const JobList& list, ElementwiseKernel kernel, unsigned threads) {
  const size_t total = list.totalElements();
  if (total == 0) return;
  const unsigned used = threadsFor(total, threads);
  const unsigned parts = partsFor(used);
  const Job* jobs = list.jobs.data();
  const size_t* first = list.firstElement.data();
  const size_t count = list.jobs.size();
  const auto part = [&](unsigned p) {
    const size_t begin = total * p / parts;
    const size_t end = total * (p + 1) / parts;
    for (size_t k = jobAt(list, begin); k < count && first[k] < end; ++k) {
      const size_t jobBegin = std::max(begin, first[k]) - first[k];
      const size_t jobEnd = std::min(end, first[k + 1]) - first[k];
      if (jobBegin < jobEnd) kernel(jobs[k], jobBegin, jobEnd);
    }
  };
  if (parts == 1) {
    part(0);
  } else {
    ThreadPool::instance().run(parts, used, part);
  }
}

void runPerTensor(const JobList& list, TensorKernel kernel, void* context, unsigned threads) {
  const size_t total = list.totalElements();
  const size_t count = list.jobs.size();
  const unsigned used = threadsFor(total, threads);
  const unsigned parts = partsFor(used);
  const size_t* first = list.firstElement.data();
  const auto part = [&](unsigned p) {
    const size_t begin = total * p / parts;
    const size_t end = total * (p + 1) / parts;
    // Jobs whose first element is in [begin, end); the last part also takes the empty jobs at the
    // end (their first element is `total`).
    size_t k = static_cast<size_t>(std::lower_bound(first, first + count, begin) - first);
    for (; k < count && (first[k] < end || (p + 1 == parts && first[k] == total)); ++k) {
      kernel(list.jobs[k], context);
    }
  };
  if (parts == 1) {
    part(0);
  } else {
    ThreadPool::instance().run(parts, used, part);
  }
}

}  // namespace simd_adamw
