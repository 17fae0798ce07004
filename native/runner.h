// The generic step runner: one pass of an op over many tensors (jobs), split across the thread
// pool. It knows nothing about any op: jobs carry their arrays, scalars and flags, and the kernel
// is a pointer from the dispatch table. Elementwise ops take one pass (runElementwise); phased ops
// (native/ops/phased.h) a few, each over fixed chunks and followed by a per-tensor step
// (runPhasedPass).
#pragma once

#include <cstddef>
#include <vector>

#include "ops/op.h"
#include "ops/phased.h"

namespace simd_adamw {

// Each thread gets at least this many elements; smaller passes run on the calling thread alone.
// Measured on the 2-core development machine (bench/thread-cutover): below about 16K elements the
// cost of waking a worker and waiting for it is larger than the time it saves.
constexpr size_t kMinElementsPerThread = 16384;

// How many parts a pass on `threadsUsed` threads is cut into: one per thread. The caller always
// takes part 0 and a worker part 1, so at cache-resident sizes each core keeps its range of the
// arrays in its own cache from step to step (measured with the roofline probe at 64K elements on 2
// threads: 1.40-1.76x one thread with 2 parts, 1.07-1.12x with 8 parts claimed by whoever was
// free, the data moving between cores every step). Every threaded pass (the step, the gradient
// norm, the bench's roofline probe) cuts the same way, so they share one cache layout.
constexpr unsigned partsFor(unsigned threadsUsed) { return threadsUsed; }

// How many threads a pass over `totalElements` elements uses when `threads` are allowed.
unsigned threadsFor(size_t totalElements, unsigned threads);

// A list of jobs and where each starts when their elements are laid end to end.
struct JobList {
  std::vector<Job> jobs;
  std::vector<size_t> firstElement;  // jobs.size() + 1 entries; the last is the total

  // Recomputes firstElement from the jobs' lengths.
  void layOut();
  size_t totalElements() const { return firstElement.empty() ? 0 : firstElement.back(); }
};

// Applies each job's kernel (kernels[job.op], one ISA's table) to every job, on up to `threads`
// threads. The elements of all jobs are laid end to end and cut into equal contiguous ranges, one
// per part, so large tensors are split and many small ones are spread; inside a job whose op needs
// whole blocks (job.blockSize > 1: blockwise8) the cut moves down to a block start, so every part
// has whole blocks counted from the tensor's start. Each element is computed exactly as in a
// single-threaded pass, so the result is bitwise the same for every thread count. No allocation.
void runElementwise(const JobList& list, const ElementwiseKernel* kernels, unsigned threads);

// A pass that needs whole tensors (a row or column reduction). Called once per job.
using TensorKernel = void (*)(const Job& job, void* context);

// Applies `kernel` to every job, on up to `threads` threads, handing out whole tensors: part p of
// the cut above takes the jobs whose first element falls in its range, in order. The cut depends
// only on the lengths and the part count; a kernel that computes each tensor independently gives
// the same bits for every thread count.
void runPerTensor(const JobList& list, TensorKernel kernel, void* context, unsigned threads);

// One pass of a phased plan: the tensors that take part in it (by their shape: see
// OpLayout::factoredPasses), laid end to end. Built once by the plan.
struct PhasedPass {
  unsigned pass;
  std::vector<size_t> tensors;       // indices into the plan's jobs, in order
  std::vector<size_t> firstElement;  // tensors.size() + 1 entries; the last is the total
};

// Runs `pass` of a phased plan on up to `threads` threads: the chunk kernel of every tensor of
// it, then every such tensor's step between passes. The elements of the pass's tensors are laid
// end to end and cut into one range per part, as runElementwise does, and each part runs the
// chunks that start in its range (the chunks depend only on each tensor's shape, and each chunk
// writes only its own partials and elements); then each part runs the step of the tensors that
// start in its range. So every thread count gives the same bits. `works[k]` is job k's workspace;
// job k's kernels are kernels[jobs[k].op - firstOp]. No allocation.
void runPhasedPass(const JobList& list, PhasedWork* works, const PhasedPass& pass,
                   const PhasedKernels* kernels, unsigned firstOp, unsigned threads);

}  // namespace simd_adamw
