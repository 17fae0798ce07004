// One optimizer step over many tensors, split across threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "adamw.h"

namespace simd_adamw {

// One tensor's part of a step: its arrays, its coefficients and its variant flags.
struct StepJob {
  AdamwTensor tensor;
  AdamwScalars scalars;
  uint32_t flags;
};

// Each thread gets at least this many elements; smaller steps run on the calling thread alone.
// Measured on the 2-core development machine (bench/thread-cutover): below about 16K elements the
// cost of waking a worker and waiting for it is larger than the time it saves.
constexpr size_t kMinElementsPerThread = 16384;

// Parts per thread. One: the caller always takes part 0 and a worker part 1, so at cache-resident
// sizes each core keeps its half of the arrays in its own cache from step to step. Measured with
// the roofline probe at 64K elements on 2 threads: 1.40-1.76x one thread with 2 parts, 1.07-1.12x
// with 8 parts claimed by whoever was free (the data moved between cores every step).
constexpr unsigned kPartsPerThread = 1;

// How many parts a pass on `threadsUsed` threads is cut into. Every threaded pass (the step, the
// gradient norm, the bench's roofline probe) cuts the same way, so they share one cache layout.
constexpr unsigned partsFor(unsigned threadsUsed) {
  return threadsUsed == 1 ? 1 : threadsUsed * kPartsPerThread;
}

// How many threads a step of `totalElements` elements uses when `threads` are allowed.
unsigned threadsFor(size_t totalElements, unsigned threads);

// Applies every job with `kernel`, on up to `threads` threads. The elements of all jobs are laid
// end to end and cut into equal contiguous ranges, one per thread, so large tensors are split and
// many small ones are spread. Each element is computed exactly as in a single-threaded step, so
// the result is bitwise the same for every thread count.
void runStep(const std::vector<StepJob>& jobs, AdamwKernel kernel, unsigned threads);

}  // namespace simd_adamw
