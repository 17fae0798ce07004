// The came op (family "came"): CAME (Luo et al. 2023, the authors' came_pytorch/CAME.py) with
// float32 state, a phased op (native/ops/phased.h: chunks, canonical sums, the runner).
//
// Per tensor, from the float32 scalars (computed in double by lib/, rounded once by the plan):
//   g = g * gradFactor (the fused clip/unscale; 1 without it)
//   the second moment as Adafactor's (native/ops/adafactor.h) with the fixed beta2:
//     factored: upd = (rsqrt(row[r] / mean(row over the batch)) * rsqrt(col[c])) * g
//     unfactored: v = beta2*v + oneMinusBeta2*(g*g + eps1); upd = rsqrt(v) * g
//   upd = upd * float(1 / max(1, rmsU / clipThreshold)),  rmsU = sqrt(sum upd^2 / n)
//   m = beta1*m + oneMinusBeta1*upd                                             (expAvg)
//   factored: res = (upd - m)^2 + eps2, with the NEW m;
//     resRow = beta3*resRow + oneMinusBeta3*mean(res over the row)              (expAvgResRow)
//     resCol = beta3*resCol + oneMinusBeta3*mean(res over the column)           (expAvgResCol)
//     upd = (rsqrt(resRow[r] / mean(resRow over the batch)) * rsqrt(resCol[c])) * m
//   unfactored: upd = m (no confidence term)
//   p = p*decay + negLr*upd
//
// Passes, and why no fewer: the clip needs the whole update's RMS, the update needs the second
// moment's column sums, and the confidence factor needs the instability's column sums, which need
// the clipped update: three reductions in a chain, so four passes.
//   factored, 4: (0) row sums of u (the row EMA updated per row), column partials of u; between:
//                column EMA and factors, the batches' row means. (1) upd^2 sums; between: the
//                clip factor. (2) m, stored, and the instability's row sums (resRow's EMA per
//                row) and column partials; between: resCol's EMA and factors, resRow's means.
//                (3) p, paramBf16.
//   unfactored, 2: (0) v's EMA, stored, and upd^2 sums; between: the clip factor. (3) m, p.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "adamw-math.h"
#include "lanes.h"
#include "op.h"
#include "phased.h"

namespace simd_adamw {

struct CameOp {
  static constexpr const char* kName = "came";
  static constexpr const char* kFamily = "came";

  enum Array : size_t {
    kParam,
    kGrad,
    kExpAvg,
    kExpAvgSq,
    kExpAvgSqRow,
    kExpAvgSqCol,
    kExpAvgResRow,
    kExpAvgResCol,
    kParamBf16,
  };
  static constexpr const char* kArrays[] = {"param",        "grad",         "expAvg",
                                            "expAvgSq",     "expAvgSqRow",  "expAvgSqCol",
                                            "expAvgResRow", "expAvgResCol", "paramBf16"};
  static constexpr ArrayType kArrayTypes[] = {
      ArrayType::kFloat32, ArrayType::kGrad,    ArrayType::kFloat32,
      ArrayType::kFloat32, ArrayType::kFloat32, ArrayType::kFloat32,
      ArrayType::kFloat32, ArrayType::kFloat32, ArrayType::kBfloat16};
  static constexpr ArrayLength kArrayLengths[] = {
      ArrayLength::kParam, ArrayLength::kParam, ArrayLength::kParam,
      ArrayLength::kParam, ArrayLength::kRows,  ArrayLength::kCols,
      ArrayLength::kRows,  ArrayLength::kCols,  ArrayLength::kParam};

  enum Scalar : size_t {
    kBeta1,
    kOneMinusBeta1,
    kBeta2,
    kOneMinusBeta2,
    kBeta3,
    kOneMinusBeta3,
    kEps1,  // added to g*g before the means
    kEps2,  // added to the squared instability
    kClipThreshold,
    kDecay,  // 1 - lr * weightDecay
    kNegLr,
    kScalarCount,
    kGradFactor = kScalarCount,
  };
  static constexpr const char* kScalars[] = {
      "beta1", "oneMinusBeta1", "beta2",         "oneMinusBeta2", "beta3", "oneMinusBeta3",
      "eps1",  "eps2",          "clipThreshold", "decay",         "negLr"};

  enum Flag : uint32_t {
    kScaleGrad = 1u << 4,     // internal: the fused step's factor (applied always; 1 without)
    kGradDtypeLow = 1u << 5,  // internal: two bits, the tensor's GradDtype
    kGradDtypeHigh = 1u << 6,
    kHasParamBf16 = 1u << 7,  // internal: the tensor has a paramBf16 array to write
  };
  static constexpr uint32_t kGradDtypeShift = 5;
  static constexpr uint32_t kGradDtypeMask = kGradDtypeLow | kGradDtypeHigh;
  static constexpr const OpFlag* kFlags = nullptr;  // no public flags
  static constexpr size_t kFlagCount = 0;
  static constexpr OpOptionalArray kOptionalArrays[] = {
      {kExpAvgSq, 0, true, ShapePresence::kUnfactored},
      {kExpAvgSqRow, 0, true, ShapePresence::kFactored},
      {kExpAvgSqCol, 0, true, ShapePresence::kFactored},
      {kExpAvgResRow, 0, true, ShapePresence::kFactored},
      {kExpAvgResCol, 0, true, ShapePresence::kFactored},
      {kParamBf16, kHasParamBf16, true}};

  enum Pass : unsigned { kStatistics, kUpdateNorm, kInstability, kApply, kPassCount };
  static constexpr uint32_t kFactoredPasses =
      1u << kStatistics | 1u << kUpdateNorm | 1u << kInstability | 1u << kApply;
  static constexpr uint32_t kUnfactoredPasses = 1u << kStatistics | 1u << kApply;

  enum TensorScalar : size_t { kClipScale };
  enum ChunkSum : size_t { kUpdateSquares };

  template <class F32, class F64>
  static void chunks(const Job& job, PhasedWork& work, unsigned pass, size_t begin, size_t end);
  // A template only so that each ISA's translation unit keeps its own internal copy.
  template <class F32>
  static void between(const Job& job, PhasedWork& work, unsigned pass);
};

namespace {

struct CameArgs {
  float* param;
  const void* grad;
  float* expAvg;
  float* expAvgSq;
  float* row;
  float* col;
  float* resRow;
  float* resCol;
  uint16_t* paramBf16;
  const float* s;

  explicit CameArgs(const Job& job)
      : param(static_cast<float*>(job.arrays[CameOp::kParam])),
        grad(job.arrays[CameOp::kGrad]),
        expAvg(static_cast<float*>(job.arrays[CameOp::kExpAvg])),
        expAvgSq(static_cast<float*>(job.arrays[CameOp::kExpAvgSq])),
        row(static_cast<float*>(job.arrays[CameOp::kExpAvgSqRow])),
        col(static_cast<float*>(job.arrays[CameOp::kExpAvgSqCol])),
        resRow(static_cast<float*>(job.arrays[CameOp::kExpAvgResRow])),
        resCol(static_cast<float*>(job.arrays[CameOp::kExpAvgResCol])),
        paramBf16(static_cast<uint16_t*>(job.arrays[CameOp::kParamBf16])),
        s(job.scalars) {}
};

// The scalars of the per-element tails as vectors, set once per call: inside the loops the
// compiler would reload them after every store (a float store may alias the scalars).
template <class F32>
struct CameVectors {
  typename F32::V beta1, oneMinusBeta1, decay, negLr;

  explicit CameVectors(const CameArgs& a)
      : beta1(F32::set1(a.s[CameOp::kBeta1])),
        oneMinusBeta1(F32::set1(a.s[CameOp::kOneMinusBeta1])),
        decay(F32::set1(a.s[CameOp::kDecay])),
        negLr(F32::set1(a.s[CameOp::kNegLr])) {}
};

// m = beta1*m + oneMinusBeta1*upd, stored; returns the new m.
template <class F32, class Tag>
inline typename F32::V cameMoment(const CameArgs& a, const CameVectors<F32>& constants, size_t i,
                                  typename F32::V upd, Tag tag) {
  using L = Lanes<F32>;
  const typename F32::V m = F32::add(F32::mul(constants.beta1, L::load(a.expAvg + i, tag)),
                                     F32::mul(constants.oneMinusBeta1, upd));
  L::store(a.expAvg + i, F32::canonicalizeNan(m), tag);
  return m;
}

// p = p*decay + negLr*upd, stored (and its bf16 copy).
template <class F32, class Tag>
inline void cameApply(const CameArgs& a, const CameVectors<F32>& constants, size_t i,
                      typename F32::V upd, Tag tag) {
  using L = Lanes<F32>;
  const typename F32::V p = F32::add(F32::mul(L::load(a.param + i, tag), constants.decay),
                                     F32::mul(constants.negLr, upd));
  L::store(a.param + i, F32::canonicalizeNan(p), tag);
  if (a.paramBf16 != nullptr) L::storeBf16(a.paramBf16 + i, p, tag);
}

}  // namespace

template <class F32, class F64>
void CameOp::chunks(const Job& job, PhasedWork& w, unsigned pass, size_t begin, size_t end) {
  using L = Lanes<F32>;
  using V = typename F32::V;
  const CameArgs a(job);
  StagedGrad<F32> staging(job, kGradDtypeShift, a.s[kGradFactor]);
  const V eps1 = F32::set1(a.s[kEps1]);
  const V one = F32::set1(1.0f);
  const V clipScale = F32::set1(w.scalars[kClipScale]);
  const CameVectors<F32> constants(a);
  const size_t R = w.shape.rows, C = w.shape.cols;
  float staged[kSegment];

  if (!w.factored) {
    for (size_t c = begin; c < end; ++c) {
      const size_t first = c * kPhasedChunk;
      const size_t count = std::min(kPhasedChunk, w.length - first);
      if (pass == kStatistics) {
        const V beta2 = F32::set1(a.s[kBeta2]);
        const V oneMinusBeta2 = F32::set1(a.s[kOneMinusBeta2]);
        CanonicalSum<F64> updateSquares;
        forEachSegment(count, [&](size_t s, size_t n) {
          const size_t at = first + s;
          const float* grads = staging.at(at, n);
          forEachVectorShort<F32>(0, n, [&](size_t i, auto tag) {
            const V g = L::load(grads + i, tag);
            const V v = F32::add(F32::mul(beta2, L::load(a.expAvgSq + at + i, tag)),
                                 F32::mul(oneMinusBeta2, F32::add(F32::mul(g, g), eps1)));
            L::store(a.expAvgSq + at + i, F32::canonicalizeNan(v), tag);
            L::store(staged + i, F32::mul(F32::div(one, F32::sqrt(v)), g), tag);
          });
          updateSquares.addSquares(staged, n);
        });
        w.chunkSums[c * kChunkSums + kUpdateSquares] = updateSquares.total();
      } else {  // kApply
        forEachSegment(count, [&](size_t s, size_t n) {
          const size_t at = first + s;
          const float* grads = staging.at(at, n);
          forEachVectorShort<F32>(0, n, [&](size_t i, auto tag) {
            const V v = L::load(a.expAvgSq + at + i, tag);
            const V upd =
                F32::mul(F32::mul(F32::div(one, F32::sqrt(v)), L::load(grads + i, tag)), clipScale);
            cameApply<F32>(a, constants, at + i, cameMoment<F32>(a, constants, at + i, upd, tag),
                           tag);
          });
        });
      }
    }
    return;
  }

  const V eps2 = F32::set1(a.s[kEps2]);
  for (size_t c = begin; c < end; ++c) {
    const ChunkRows rows = chunkRows(w, c);
    const size_t b = rows.batch;
    double* columns = w.colPartials + c * C;
    const bool withColumns = pass == kStatistics || pass == kInstability;
    if (withColumns) std::fill(columns, columns + C, 0.0);
    double chunkSum = 0.0;
    for (size_t r = rows.firstRow; r < rows.endRow; ++r) {
      const size_t rowFirst = (b * R + r) * C;
      CanonicalSum<F64> sum;
      if (pass == kStatistics) {
        forEachSegment(C, [&](size_t s, size_t n) {
          const float* grads = staging.at(rowFirst + s, n);
          forEachVectorShort<F32>(0, n, [&](size_t i, auto tag) {
            const V g = L::load(grads + i, tag);
            L::store(staged + i, F32::add(F32::mul(g, g), eps1), tag);
          });
          sum.add(staged, n);
          addToColumns<F64>(columns + s, staged, n);
        });
        float& state = a.row[b * R + r];
        state = emaOfMean(state, a.s[kBeta2], a.s[kOneMinusBeta2], sum.total(), C);
        continue;
      }
      // The update's factors in passes 1 and 2, the confidence factors in pass 3 (the column
      // factors were replaced by the step after pass 2). One loop per pass: a pass test inside the
      // vector loop costs as much as its arithmetic.
      const float* factorRows = pass == kApply ? a.resRow : a.row;
      const V factor = F32::set1(rowFactor(w, factorRows, b, r));
      const float* colFactors = w.colFactors + b * C;
      if (pass == kApply) {  // reads no gradient
        forEachSegment(C, [&](size_t s, size_t n) {
          const size_t at = rowFirst + s;
          forEachVectorShort<F32>(0, n, [&](size_t i, auto tag) {
            const V rowCol = F32::mul(factor, L::load(colFactors + s + i, tag));
            cameApply<F32>(a, constants, at + i, F32::mul(rowCol, L::load(a.expAvg + at + i, tag)),
                           tag);
          });
        });
        continue;
      }
      if (pass == kUpdateNorm) {
        forEachSegment(C, [&](size_t s, size_t n) {
          const float* grads = staging.at(rowFirst + s, n);
          forEachVectorShort<F32>(0, n, [&](size_t i, auto tag) {
            const V rowCol = F32::mul(factor, L::load(colFactors + s + i, tag));
            L::store(staged + i, F32::mul(rowCol, L::load(grads + i, tag)), tag);
          });
          sum.addSquares(staged, n);
        });
        chunkSum += sum.total();
        continue;
      }
      forEachSegment(C, [&](size_t s, size_t n) {  // kInstability
        const size_t at = rowFirst + s;
        const float* grads = staging.at(at, n);
        forEachVectorShort<F32>(0, n, [&](size_t i, auto tag) {
          const V rowCol = F32::mul(factor, L::load(colFactors + s + i, tag));
          const V clipped = F32::mul(F32::mul(rowCol, L::load(grads + i, tag)), clipScale);
          const V m = cameMoment<F32>(a, constants, at + i, clipped, tag);
          const V d = F32::add(clipped, F32::neg(m));
          L::store(staged + i, F32::add(F32::mul(d, d), eps2), tag);
        });
        sum.add(staged, n);
        addToColumns<F64>(columns + s, staged, n);
      });
      float& state = a.resRow[b * R + r];
      state = emaOfMean(state, a.s[kBeta3], a.s[kOneMinusBeta3], sum.total(), C);
    }
    if (pass == kUpdateNorm) w.chunkSums[c * kChunkSums + kUpdateSquares] = chunkSum;
  }
}

template <class F32>
void CameOp::between(const Job& job, PhasedWork& w, unsigned pass) {
  const CameArgs a(job);
  if (w.factored && pass == kStatistics) {
    updateColumns(w, a.col, a.row, a.s[kBeta2], a.s[kOneMinusBeta2]);
  } else if (w.factored && pass == kInstability) {
    updateColumns(w, a.resCol, a.resRow, a.s[kBeta3], a.s[kOneMinusBeta3]);
  } else if (pass != kApply) {
    // After the unfactored statistics pass, or the factored update-norm pass.
    const double rmsU = std::sqrt(chunkTotal(w, kUpdateSquares) / static_cast<double>(w.length));
    w.scalars[kClipScale] = static_cast<float>(1.0 / clipDivisor(rmsU, a.s[kClipThreshold]));
  }
}

}  // namespace simd_adamw
