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

// Before a tensor is updated, the first KiB of each array of the next one is prefetched. A small
// tensor's arrays are each a new stream for the hardware prefetcher, which has to see a few misses
// before it runs ahead, and with hundreds of bias-sized tensors that start-up is most of the time.
// Measured on the development machine (Zen 5, 1 thread, AdamW.step() on 1,024 tensors of 1,024 in
// separate allocations against one tensor of 1M): 0.37-0.40x without, 0.60-0.75x with 16 lines;
// 8 lines and 32 or more did no better. Only addresses inside the next tensor's arrays are formed.
constexpr size_t kNextTensorPrefetchLines = 16;
constexpr size_t kLineBytes = 64;

void prefetchStart(const Job& job) {
  for (size_t a = 0; a < kMaxArraysPerTensor; ++a) {
    const char* array = static_cast<const char*>(job.arrays[a]);
    if (array == nullptr) continue;
    const size_t lines = std::min(job.arrayBytes[a] / kLineBytes, kNextTensorPrefetchLines);
    for (size_t l = 0; l < lines; ++l) __builtin_prefetch(array + l * kLineBytes);
  }
}

// Where a part boundary at element `at` of a tensor falls for a kernel that needs whole blocks:
// rounded down to a block start (the tensor's end stays its end).
size_t blockStart(size_t at, size_t length, size_t blockSize) {
  return at >= length ? length : at - at % blockSize;
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

void runElementwise(const JobList& list, const ElementwiseKernel* kernels, unsigned threads) {
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
      const Job& job = jobs[k];
      // Both ends rounded the same way, so neighbouring parts meet at the same block start.
      const size_t jobBegin =
          blockStart(std::max(begin, first[k]) - first[k], job.length, job.blockSize);
      const size_t jobEnd =
          blockStart(std::min(end, first[k + 1]) - first[k], job.length, job.blockSize);
      if (k + 1 < count) prefetchStart(jobs[k + 1]);
      if (jobBegin < jobEnd) kernels[job.op](job, jobBegin, jobEnd);
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

void runPhasedPass(const JobList& list, PhasedWork* works, const PhasedPass& pass,
                   const PhasedKernels* kernels, unsigned firstOp, unsigned threads) {
  const size_t count = pass.tensors.size();
  if (count == 0) return;
  const size_t* first = pass.firstElement.data();
  const size_t total = first[count];
  const unsigned used = threadsFor(total, threads);
  const unsigned parts = partsFor(used);
  const Job* jobs = list.jobs.data();
  // The tensor (of the pass) holding element `element`: the last starting at or before it (every
  // tensor of a pass has elements, so there are no empty ones to step past).
  const auto tensorAt = [&](size_t element) {
    return static_cast<size_t>(std::upper_bound(first, first + count, element) - first) - 1;
  };
  const auto chunkPart = [&](unsigned p) {
    const size_t begin = total * p / parts;
    const size_t end = total * (p + 1) / parts;
    for (size_t t = tensorAt(begin); t < count && first[t] < end; ++t) {
      const size_t k = pass.tensors[t];
      PhasedWork& work = works[k];
      const size_t chunkBegin = firstChunkAtOrAfter(work, std::max(begin, first[t]) - first[t]);
      const size_t chunkEnd = firstChunkAtOrAfter(work, std::min(end, first[t + 1]) - first[t]);
      if (t + 1 < count) prefetchStart(jobs[pass.tensors[t + 1]]);
      if (chunkBegin < chunkEnd) {
        kernels[jobs[k].op - firstOp].chunks(jobs[k], work, pass.pass, chunkBegin, chunkEnd);
      }
    }
  };
  const auto stepPart = [&](unsigned p) {
    const size_t begin = total * p / parts;
    const size_t end = total * (p + 1) / parts;
    size_t t = static_cast<size_t>(std::lower_bound(first, first + count, begin) - first);
    for (; t < count && first[t] < end; ++t) {
      const size_t k = pass.tensors[t];
      kernels[jobs[k].op - firstOp].between(jobs[k], works[k], pass.pass);
    }
  };
  if (parts == 1) {
    chunkPart(0);
    stepPart(0);
  } else {
    ThreadPool::instance().run(parts, used, chunkPart);
    ThreadPool::instance().run(parts, used, stepPart);
  }
}

}  // namespace simd_adamw
