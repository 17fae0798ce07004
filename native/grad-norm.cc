// See grad-norm.h.
#include "grad-norm.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "runner.h"
#include "thread-pool.h"

namespace simd_adamw {
namespace {

// The one NaN sumOfSquares returns: which NaN an addition of NaNs gives is up to the hardware.
double canonicalNan(double x) {
  return std::isnan(x) ? std::numeric_limits<double>::quiet_NaN() : x;
}

}  // namespace

double sumOfSquares(const std::vector<GradSpan>& spans, const SumSquaresKernel* kernels,
                    unsigned threads, std::vector<double>* perSpan) {
  // firstBlock[k]: the index of span k's first block among all spans' blocks laid end to end.
  std::vector<size_t> firstBlock(spans.size() + 1, 0);
  size_t totalElements = 0;
  for (size_t k = 0; k < spans.size(); ++k) {
    const size_t blocks = (spans[k].length + kSumSquaresBlock - 1) / kSumSquaresBlock;
    firstBlock[k + 1] = firstBlock[k] + blocks;
    totalElements += spans[k].length;
  }
  const size_t blockCount = firstBlock.back();
  std::vector<double> blockSums(blockCount);

  // The same thread count and parts as a step of this many elements (native/runner.h).
  const unsigned used = threadsFor(totalElements, threads);
  const unsigned parts = partsFor(used);
  ThreadPool::instance().run(parts, used, [&](unsigned part) {
    const size_t begin = blockCount * part / parts;
    const size_t end = blockCount * (part + 1) / parts;
    if (begin == end) return;
    // The span holding block `begin`: the last one starting at or before it (empty spans start
    // where the next one does, and upper_bound steps past them). Then each span's run of blocks
    // within [begin, end), in one kernel call.
    size_t k = static_cast<size_t>(std::upper_bound(firstBlock.begin(), firstBlock.end(), begin) -
                                   firstBlock.begin()) -
               1;
    for (; k < spans.size() && firstBlock[k] < end; ++k) {
      const size_t first = std::max(begin, firstBlock[k]) - firstBlock[k];
      const size_t last = std::min(end, firstBlock[k + 1]) - firstBlock[k];
      if (first == last) continue;
      const size_t offset = first * kSumSquaresBlock;
      const size_t length = std::min(spans[k].length, last * kSumSquaresBlock) - offset;
      double* sums = blockSums.data() + firstBlock[k] + first;
      const size_t elementSize = spans[k].dtype == kGradFloat32 ? 4 : 2;
      kernels[spans[k].dtype](static_cast<const char*>(spans[k].data) + offset * elementSize,
                              length, sums);
      for (size_t b = 0; b < last - first; ++b) sums[b] = canonicalNan(sums[b]);
    }
  });

  if (perSpan != nullptr) perSpan->assign(spans.size(), 0.0);
  double total = 0.0;
  for (size_t k = 0; k < spans.size(); ++k) {
    double spanSum = 0.0;
    for (size_t b = firstBlock[k]; b < firstBlock[k + 1]; ++b) spanSum += blockSums[b];
    if (perSpan != nullptr) (*perSpan)[k] = spanSum;
    total += spanSum;
  }
  return canonicalNan(total);
}

}  // namespace simd_adamw
