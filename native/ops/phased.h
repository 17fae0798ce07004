// What a phased op is: an optimizer whose step needs reductions over a whole tensor (row and column
// means, the RMS of the param and of the update), run as a few passes over each tensor with a small
// per-tensor step between them (native/ops/adafactor.h, came.h). The runner (native/runner.h,
// runPhasedPass) runs pass p of every tensor of a plan, then every tensor's step after pass p, then
// pass p + 1, all inside the one runPlan call; a phased op is "a header plus a row" in op-list.h.
//
// Bitwise agreement across ISAs and thread counts comes from one fixed partition and one order:
//   - Chunks depend only on the tensor's shape. An unfactored tensor is cut into kPhasedChunk
//     elements from its start. A factored one, [batches, R, C], into chunks of whole rows within
//     one batch, rowsPerChunk = max(ceil(kPhasedChunk / C), ceil(R / kMaxChunksPerBatch)) rows
//     each: at most 16 chunks per batch, so the column partials (one row of C doubles per chunk)
//     stay at most 16 * batches * C doubles. Threads take whole chunks; each chunk writes only its
//     own partials and its own elements, so who runs it changes nothing.
//   - Per-element terms (g*g + eps1, the update, the instability) are computed in float32 by the
//     vector layer, a segment of kSegment elements at a time into a stack buffer, then accumulated
//     in double on the F64 layer (widened exactly; the squares of float32 values taken in double
//     are exact). Each row partial and each column is its own lane, so the vector width changes
//     no addition and no order.
//   - A row's sum over its C elements: element c into partial c % 16 in increasing c, each partial
//     from +0, then the fixed folding tree of native/ops/sum-squares.h (combinePartials). A column
//     partial of a chunk: the chunk's rows added in row order, each column its own accumulator (no
//     dependence on the vector width). A chunk total: its row sums added in row order (factored),
//     or the 16-partial sum over its elements (unfactored). A tensor total, and a column sum: the
//     chunks' partials added in chunk order from +0.
//   - Everything between passes (the column sums, means, EMAs of the row/column state, the
//     factors, the RMS values and the per-tensor scalars) is plain scalar code, the same IEEE
//     operations on every ISA (-ffp-contract=off: no fusing), with every NaN stored canonical.
// The row state's EMA is updated inside the chunk that owns the row (it needs only that row's
// sum); only the columns and the row factor's normalisation (the mean over a batch's R rows) wait
// for the step between passes.
//
// The workspace (PhasedWork) is the plan's, allocated once at createPlan (native/plan.cc):
// per factored tensor chunkCount * C + 2 * chunkCount + batches doubles and batches * C floats, per
// unfactored tensor 2 * chunkCount doubles (see phasedWorkDoubles / phasedWorkFloats). Nothing is
// allocated per step.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../simd/canonical-nan.h"
#include "adamw-math.h"
#include "lanes.h"
#include "op.h"
#include "sum-squares.h"

namespace simd_adamw {

// Unfactored chunks, and the element count a factored chunk's rows aim at.
constexpr size_t kPhasedChunk = 16384;
constexpr size_t kMaxChunksPerBatch = 16;
// The canonical row sum's partials (the gradient norm's: native/grad-norm.h).
constexpr size_t kRowPartials = kSumSquaresPartials;
// Elements staged in float32 at a time (a multiple of 16 and of every vector width).
constexpr size_t kSegment = 256;
// Double sums each chunk keeps for its op (Adafactor: the param's and the update's squares).
constexpr size_t kChunkSums = 2;
// Float32 scalars an op computes per tensor between passes (the clip factor, lrT...).
constexpr size_t kTensorScalars = 4;

// createPlan's shape of one tensor, [batches, R, C]; [0, 0, 0] is unfactored.
struct PhasedShape {
  size_t batches;
  size_t rows;
  size_t cols;
};

// One tensor's chunk geometry and workspace (pointers into the plan's buffers).
struct PhasedWork {
  PhasedShape shape;
  bool factored;
  size_t length;
  size_t rowsPerChunk;    // factored
  size_t chunksPerBatch;  // factored
  size_t chunkCount;      // 0 for an empty tensor: it takes part in no pass
  double* colPartials;    // factored: chunkCount rows of C
  double* chunkSums;      // chunkCount * kChunkSums
  double* batchRowMeans;  // factored: per batch, the mean of the row state (the factor's norm)
  float* colFactors;      // factored: batches * C, rsqrt of the column state
  float scalars[kTensorScalars];
};

// A phased op's kernels for one ISA. `chunks` runs pass `pass` on chunks [begin, end) of a tensor
// (any split of a tensor's chunks gives the same bits); `between` is the tensor's step after pass
// `pass` (called once per tensor that took part in it).
using PhasedChunkKernel = void (*)(const Job& job, PhasedWork& work, unsigned pass, size_t begin,
                                   size_t end);
using PhasedTensorStep = void (*)(const Job& job, PhasedWork& work, unsigned pass);
struct PhasedKernels {
  PhasedChunkKernel chunks;
  PhasedTensorStep between;
};

// Builds a phased op's OpLayout from its descriptor (native/ops/adafactor.h for the shape): as
// layoutOf, plus the passes; flags through a pointer and a count (CAME has none, and a C++ array
// cannot be empty).
template <class Op>
constexpr OpLayout phasedLayoutOf() {
  uint32_t publicFlags = 0;
  for (size_t f = 0; f < Op::kFlagCount; ++f) publicFlags |= Op::kFlags[f].bit;
  static_assert(countOf(Op::kArrays) == countOf(Op::kArrayTypes), "one type per array");
  static_assert(countOf(Op::kArrays) == countOf(Op::kArrayLengths), "one length per array");
  static_assert(countOf(Op::kArrays) <= kMaxArraysPerTensor, "kMaxArraysPerTensor is enough");
  static_assert(Op::kPassCount <= 32, "a pass mask has 32 bits");
  OpLayout l{Op::kName,
             Op::kFamily,
             Op::kArrays,
             Op::kArrayTypes,
             Op::kArrayLengths,
             countOf(Op::kArrays),
             1,
             Op::kOptionalArrays,
             countOf(Op::kOptionalArrays),
             Op::kScalars,
             countOf(Op::kScalars),
             Op::kFlags,
             Op::kFlagCount,
             publicFlags,
             Op::kScaleGrad,
             0,
             Op::kGradDtypeShift,
             0,
             0};
  l.passCount = Op::kPassCount;
  l.factoredPasses = Op::kFactoredPasses;
  l.unfactoredPasses = Op::kUnfactoredPasses;
  return l;
}

}  // namespace simd_adamw

namespace simd_adamw {
namespace {

// ---------------------------------------------------------------------------------------------
// Geometry (also used by the plan and the runner)

// The geometry of a tensor of `length` elements and `shape`, without its buffers.
inline PhasedWork phasedGeometry(const PhasedShape& shape, size_t length) {
  PhasedWork w{};
  w.shape = shape;
  w.factored = shape.batches != 0 || shape.rows != 0 || shape.cols != 0;
  w.length = length;
  if (length == 0) return w;
  if (!w.factored) {
    w.chunkCount = (length + kPhasedChunk - 1) / kPhasedChunk;
    return w;
  }
  const size_t byElements = (kPhasedChunk + shape.cols - 1) / shape.cols;
  const size_t byCount = (shape.rows + kMaxChunksPerBatch - 1) / kMaxChunksPerBatch;
  w.rowsPerChunk = std::max(byElements, byCount);
  w.chunksPerBatch = (shape.rows + w.rowsPerChunk - 1) / w.rowsPerChunk;
  w.chunkCount = shape.batches * w.chunksPerBatch;
  return w;
}

inline size_t phasedWorkDoubles(const PhasedWork& w) {
  if (w.chunkCount == 0) return 0;
  const size_t perFactored = w.factored ? w.chunkCount * w.shape.cols + w.shape.batches : 0;
  return w.chunkCount * kChunkSums + perFactored;
}

inline size_t phasedWorkFloats(const PhasedWork& w) {
  return w.factored && w.chunkCount != 0 ? w.shape.batches * w.shape.cols : 0;
}

// Points `w`'s buffers into the plan's storage (phasedWorkDoubles / phasedWorkFloats of each).
inline void placePhasedWork(PhasedWork& w, double* doubles, float* floats) {
  w.chunkSums = doubles;
  if (!w.factored) return;
  w.colPartials = doubles + w.chunkCount * kChunkSums;
  w.batchRowMeans = w.colPartials + w.chunkCount * w.shape.cols;
  w.colFactors = floats;
}

// The first chunk whose first element is at or after element `at` of the tensor (chunkCount when
// `at` is at or past the end). A part of a pass that covers elements [begin, end) runs chunks
// [firstChunkAtOrAfter(begin), firstChunkAtOrAfter(end)): neighbouring parts meet exactly.
inline size_t firstChunkAtOrAfter(const PhasedWork& w, size_t at) {
  if (at >= w.length) return w.chunkCount;
  if (!w.factored) return (at + kPhasedChunk - 1) / kPhasedChunk;
  const size_t perBatch = w.shape.rows * w.shape.cols;
  const size_t batch = at / perBatch;
  const size_t span = w.rowsPerChunk * w.shape.cols;
  const size_t inBatch = (at % perBatch + span - 1) / span;
  return std::min(w.chunkCount, batch * w.chunksPerBatch + inBatch);
}

// The rows of factored chunk c: batch `batch`, rows [firstRow, endRow) of it.
struct ChunkRows {
  size_t batch;
  size_t firstRow;
  size_t endRow;
};

inline ChunkRows chunkRows(const PhasedWork& w, size_t c) {
  const size_t batch = c / w.chunksPerBatch;
  const size_t firstRow = (c % w.chunksPerBatch) * w.rowsPerChunk;
  return ChunkRows{batch, firstRow, std::min(w.shape.rows, firstRow + w.rowsPerChunk)};
}

// ---------------------------------------------------------------------------------------------
// The canonical sums

inline float canonicalFloat(float x) {
  if (!std::isnan(x)) return x;
  float nan;
  std::memcpy(&nan, &kCanonicalNanBits, sizeof nan);
  return nan;
}

// A sum in the canonical order: element i of a run (a row, or an unfactored chunk) into partial
// i % 16, then the folding tree. Runs are added a segment at a time, each starting at a multiple
// of 16 of the run. The 16 partials live in 16 / kWidth vectors of the F64 layer, partial
// k * kWidth + j in lane j of vector k (native/ops/sum-squares.h's layout): each partial receives
// the same additions in the same order whatever the width, so every ISA gives the same bits. A
// run's last, partial block (only the last segment of a run can end off a multiple of 16) goes
// through stored doubles, one element at a time into its partial, as before.
template <class F64>
struct CanonicalSum {
  static constexpr size_t kVectors = kRowPartials / F64::kWidth;
  typename F64::V partial[kVectors];

  CanonicalSum() {
    for (size_t k = 0; k < kVectors; ++k) partial[k] = F64::zero();
  }

  void add(const float* v, size_t n) {
    size_t j = 0;
    for (; j + kRowPartials <= n; j += kRowPartials) {
      for (size_t k = 0; k < kVectors; ++k) {
        partial[k] = F64::add(partial[k], F64::loadWiden(v + j + k * F64::kWidth));
      }
    }
    if (j == n) return;
    double lanes[kRowPartials];
    storeAll(lanes);
    for (size_t l = 0; j + l < n; ++l) lanes[l] += static_cast<double>(v[j + l]);
    loadAll(lanes);
  }

  void addSquares(const float* v, size_t n) {
    size_t j = 0;
    for (; j + kRowPartials <= n; j += kRowPartials) {
      for (size_t k = 0; k < kVectors; ++k) {
        const typename F64::V x = F64::loadWiden(v + j + k * F64::kWidth);
        partial[k] = F64::add(partial[k], F64::mul(x, x));
      }
    }
    if (j == n) return;
    double lanes[kRowPartials];
    storeAll(lanes);
    for (size_t l = 0; j + l < n; ++l) {
      const double x = v[j + l];
      lanes[l] += x * x;
    }
    loadAll(lanes);
  }

  // combinePartials' tree: its first folds (partial j plus partial j + half) add whole vectors
  // while a fold's halves are whole vectors, the rest on stored doubles.
  double total() const {
    typename F64::V folded[kVectors];
    for (size_t k = 0; k < kVectors; ++k) folded[k] = partial[k];
    for (size_t half = kVectors / 2; half >= 1; half /= 2) {
      for (size_t k = 0; k < half; ++k) folded[k] = F64::add(folded[k], folded[k + half]);
    }
    double lanes[F64::kWidth];
    F64::store(lanes, folded[0]);
    for (size_t half = F64::kWidth / 2; half >= 1; half /= 2) {
      for (size_t j = 0; j < half; ++j) lanes[j] = lanes[j] + lanes[j + half];
    }
    return lanes[0];
  }

 private:
  void storeAll(double* lanes) const {
    for (size_t k = 0; k < kVectors; ++k) F64::store(lanes + k * F64::kWidth, partial[k]);
  }
  void loadAll(const double* lanes) {
    for (size_t k = 0; k < kVectors; ++k) partial[k] = F64::load(lanes + k * F64::kWidth);
  }
};

// Adds a segment to a chunk's column partials (each column its own accumulator, so a vector of
// columns at a time adds the same values in the same order).
template <class F64>
inline void addToColumns(double* columns, const float* v, size_t n) {
  size_t j = 0;
  for (; j + F64::kWidth <= n; j += F64::kWidth) {
    F64::store(columns + j, F64::add(F64::load(columns + j), F64::loadWiden(v + j)));
  }
  for (; j < n; ++j) columns[j] += static_cast<double>(v[j]);
}

// The sum of slot `slot` of every chunk of a tensor, in chunk order from +0.
inline double chunkTotal(const PhasedWork& w, size_t slot) {
  double sum = 0.0;
  for (size_t c = 0; c < w.chunkCount; ++c) sum += w.chunkSums[c * kChunkSums + slot];
  return sum;
}

// ---------------------------------------------------------------------------------------------
// The factored second moment's scalar parts (Adafactor's and CAME's, and CAME's instability)

// state = beta * state + oneMinusBeta * mean, in float32 as the reference (torch's mul_ and add_
// on float32 tensors), the mean rounded once from the double sum.
inline float emaOfMean(float state, float beta, float oneMinusBeta, double sum, size_t count) {
  const float mean = static_cast<float>(sum / static_cast<double>(count));
  return canonicalFloat(beta * state + oneMinusBeta * mean);
}

// rsqrt(x), from double, rounded once.
inline float rsqrtFactor(double x) {
  return canonicalFloat(static_cast<float>(1.0 / std::sqrt(x)));
}

// The factor of row r of batch b: rsqrt(row / mean(row over the batch's R rows)).
inline float rowFactor(const PhasedWork& w, const float* rowState, size_t batch, size_t row) {
  return rsqrtFactor(static_cast<double>(rowState[batch * w.shape.rows + row]) /
                     w.batchRowMeans[batch]);
}

// After a pass that left column partials: every batch's column sums (its chunks' partials in
// chunk order, added into the first chunk's row), the column state's EMA of their means (over the
// R rows), the column factors, and each batch's mean of the row state (updated by the pass).
inline void updateColumns(PhasedWork& w, float* colState, const float* rowState, float beta,
                          float oneMinusBeta) {
  const size_t R = w.shape.rows, C = w.shape.cols;
  for (size_t b = 0; b < w.shape.batches; ++b) {
    double* sums = w.colPartials + b * w.chunksPerBatch * C;
    for (size_t j = 1; j < w.chunksPerBatch; ++j) {
      const double* partials = sums + j * C;
      for (size_t c = 0; c < C; ++c) sums[c] += partials[c];
    }
    float* state = colState + b * C;
    float* factors = w.colFactors + b * C;
    for (size_t c = 0; c < C; ++c) {
      // 0.0 + sums[c]: "from +0" (a partial of non-negative terms is never -0, so this is sums[c]).
      state[c] = emaOfMean(state[c], beta, oneMinusBeta, 0.0 + sums[c], R);
      factors[c] = rsqrtFactor(state[c]);
    }
    double rowSum = 0.0;
    for (size_t r = 0; r < R; ++r) rowSum += static_cast<double>(rowState[b * R + r]);
    w.batchRowMeans[b] = rowSum / static_cast<double>(R);
  }
}

// The reference's max(1, rms / clipThreshold): torch's clamp_(min=1.0), which keeps a NaN.
inline double clipDivisor(double rms, double clipThreshold) {
  const double ratio = rms / clipThreshold;
  return ratio < 1.0 ? 1.0 : ratio;
}

// The gradient of a segment, widened and multiplied by the fused step's factor (1 without it:
// g * 1 is g), into a float32 buffer: the only code per grad dtype, so the passes' loops are
// compiled once per ISA rather than once per dtype (compile time; a segment is in L1).
template <class F32, GradDtype kDtype>
void stageGradOf(const void* grad, size_t first, size_t n, float factor, float* out) {
  using L = Lanes<F32>;
  const typename F32::V f = F32::set1(factor);
  forEachVectorShort<F32>(0, n, [&](size_t i, auto tag) {
    L::store(out + i, F32::mul(L::template loadGrad<kDtype>(grad, first + i, tag), f), tag);
  });
}

// A segment's staged gradient: `at(first, n)` fills `values` with g * factor of elements
// [first, first + n) of the job's grad (of the dtype in the job's flags at `gradDtypeShift`).
template <class F32>
struct StagedGrad {
  using Stage = void (*)(const void*, size_t, size_t, float, float*);
  const void* grad;
  float factor;
  bool direct;
  Stage stage;
  float values[kSegment];

  StagedGrad(const Job& job, uint32_t gradDtypeShift, float gradFactor)
      : grad(job.arrays[1]), factor(gradFactor) {
    const uint32_t dtype = (job.flags >> gradDtypeShift) & 3u;
    // A float32 gradient with no factor is read in place: g * 1 is g for every float but a NaN,
    // which stays a NaN (its quiet bit aside), and every NaN the ops store is canonical, so the
    // copy would change no stored bit.
    direct = dtype != kGradBfloat16 && dtype != kGradFloat16 && factor == 1.0f;
    switch (dtype) {
      case kGradBfloat16:
        stage = &stageGradOf<F32, kGradBfloat16>;
        break;
      case kGradFloat16:
        stage = &stageGradOf<F32, kGradFloat16>;
        break;
      default:
        stage = &stageGradOf<F32, kGradFloat32>;
    }
  }

  const float* at(size_t first, size_t n) {
    if (direct) return static_cast<const float*>(grad) + first;
    stage(grad, first, n, factor, values);
    return values;
  }
};

// Calls segment(first, n) for the segments of a run of `length` elements: [first, first + n),
// n <= kSegment, first a multiple of kSegment.
template <class Segment>
inline void forEachSegment(size_t length, Segment segment) {
  for (size_t s = 0; s < length; s += kSegment) segment(s, std::min(kSegment, length - s));
}

}  // namespace
}  // namespace simd_adamw
