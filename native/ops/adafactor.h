// The adafactor op (family "adafactor"): Hugging Face transformers' Adafactor with float32 state, a
// phased op (native/ops/phased.h gives the chunks, the canonical sums and the runner's contract).
//
// Per tensor, from the float32 scalars (lib/ computes them in double, the plan rounds them once):
//   g = g * gradFactor (the fused clip/unscale; 1 without it)
//   factored [batches, R, C]: u = g*g + eps1;
//     row = beta2t*row + oneMinusBeta2t*mean(u over the row's C elements)        (expAvgSqRow)
//     col = beta2t*col + oneMinusBeta2t*mean(u over the column's R elements)     (expAvgSqCol)
//     upd = (rsqrt(row[r] / mean(row over the batch's R rows)) * rsqrt(col[c])) * g
//   unfactored: v = beta2t*v + oneMinusBeta2t*(g*g + eps1) (expAvgSq); upd = rsqrt(v) * g
//   rmsP = sqrt(sum p^2 / n) of p before the step, lrT = scaleParameter ? max(eps2, rmsP) *
//   stepSize : stepSize, rmsU = sqrt(sum upd^2 / n)
//   upd = upd * float(lrT / max(1, rmsU / clipThreshold))
//   firstMoment: m = beta1*m + oneMinusBeta1*upd (expAvg); upd = m
//   p = p * float(1 - weightDecay*lrT) - upd
// The per-tensor values (rmsP, lrT, rmsU, the two float factors) are computed in double between
// passes and rounded once; everything per element is float32 on the vector layer, without FMA.
//
// Passes, and why no fewer: the update's RMS (the clip) needs the whole update, and the factored
// update needs the whole tensor's column sums first, so the factored update is known only after a
// reduction and its RMS only after a second one.
//   factored, 3: (0) row sums of u (the row EMA updated per row), column partials of u, p^2 sums;
//                between: column sums, column EMA and factors, the batches' row means.
//                (1) upd^2 sums; between: rmsP, lrT, rmsU, the clip and decay factors.
//                (2) the update, expAvg, p, paramBf16.
//   unfactored, 2: (0) v's EMA, stored, with p^2 and upd^2 sums (v needs no reduction);
//                between: the per-tensor factors. (2) the update (rsqrt of the stored v), p.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "adamw-math.h"
#include "lanes.h"
#include "op.h"
#include "phased.h"

namespace simd_adamw {

struct AdafactorOp {
  static constexpr const char* kName = "adafactor";
  static constexpr const char* kFamily = "adafactor";

  enum Array : size_t {
    kParam,
    kGrad,
    kExpAvg,
    kExpAvgSq,
    kExpAvgSqRow,
    kExpAvgSqCol,
    kParamBf16,
  };
  static constexpr const char* kArrays[] = {"param",       "grad",        "expAvg",   "expAvgSq",
                                            "expAvgSqRow", "expAvgSqCol", "paramBf16"};
  static constexpr ArrayType kArrayTypes[] = {
      ArrayType::kFloat32, ArrayType::kGrad,    ArrayType::kFloat32, ArrayType::kFloat32,
      ArrayType::kFloat32, ArrayType::kFloat32, ArrayType::kBfloat16};
  static constexpr ArrayLength kArrayLengths[] = {
      ArrayLength::kParam, ArrayLength::kParam, ArrayLength::kParam, ArrayLength::kParam,
      ArrayLength::kRows,  ArrayLength::kCols,  ArrayLength::kParam};

  enum Scalar : size_t {
    kBeta2t,  // 1 - t^decayRate
    kOneMinusBeta2t,
    kEps1,  // added to g*g before the means
    kEps2,  // the floor of rmsP in lrT
    kClipThreshold,
    kStepSize,  // the relative step (min(1e-2, 1/sqrt(t)), or min(1e-6*t, ..)), or lr
    kBeta1,
    kOneMinusBeta1,
    kWeightDecay,
    kScalarCount,
    kGradFactor = kScalarCount,
  };
  static constexpr const char* kScalars[] = {"beta2t", "oneMinusBeta2t", "eps1",
                                             "eps2",   "clipThreshold",  "stepSize",
                                             "beta1",  "oneMinusBeta1",  "weightDecay"};

  enum Flag : uint32_t {
    kScaleParameter = 1u << 0,  // lrT = max(eps2, rmsP) * stepSize
    kFirstMoment = 1u << 1,     // beta1 given: keep expAvg
    kScaleGrad = 1u << 4,       // internal: the fused step's factor (applied always; 1 without)
    kGradDtypeLow = 1u << 5,    // internal: two bits, the tensor's GradDtype
    kGradDtypeHigh = 1u << 6,
    kHasParamBf16 = 1u << 7,  // internal: the tensor has a paramBf16 array to write
  };
  static constexpr uint32_t kGradDtypeShift = 5;
  static constexpr uint32_t kGradDtypeMask = kGradDtypeLow | kGradDtypeHigh;
  static constexpr OpFlag kFlagList[] = {{"scaleParameter", kScaleParameter},
                                         {"firstMoment", kFirstMoment}};
  static constexpr const OpFlag* kFlags = kFlagList;
  static constexpr size_t kFlagCount = countOf(kFlagList);
  static constexpr OpOptionalArray kOptionalArrays[] = {
      {kExpAvg, kFirstMoment, false},
      {kExpAvgSq, 0, true, ShapePresence::kUnfactored},
      {kExpAvgSqRow, 0, true, ShapePresence::kFactored},
      {kExpAvgSqCol, 0, true, ShapePresence::kFactored},
      {kParamBf16, kHasParamBf16, true}};

  enum Pass : unsigned { kStatistics, kUpdateNorm, kApply, kPassCount };
  static constexpr uint32_t kFactoredPasses = 1u << kStatistics | 1u << kUpdateNorm | 1u << kApply;
  static constexpr uint32_t kUnfactoredPasses = 1u << kStatistics | 1u << kApply;

  // PhasedWork::scalars, set between passes.
  enum TensorScalar : size_t { kUpdateScale, kParamDecay };
  // PhasedWork chunk sums.
  enum ChunkSum : size_t { kParamSquares, kUpdateSquares };

  template <class F32, class F64>
  static void chunks(const Job& job, PhasedWork& work, unsigned pass, size_t begin, size_t end);
  // A template only so that each ISA's translation unit keeps its own internal copy.
  template <class F32>
  static void between(const Job& job, PhasedWork& work, unsigned pass);
};

namespace {

// The job's arrays and scalars, typed.
struct AdafactorArgs {
  float* param;
  const void* grad;
  float* expAvg;
  float* expAvgSq;
  float* row;
  float* col;
  uint16_t* paramBf16;
  const float* s;
  bool firstMoment;

  explicit AdafactorArgs(const Job& job)
      : param(static_cast<float*>(job.arrays[AdafactorOp::kParam])),
        grad(job.arrays[AdafactorOp::kGrad]),
        expAvg(static_cast<float*>(job.arrays[AdafactorOp::kExpAvg])),
        expAvgSq(static_cast<float*>(job.arrays[AdafactorOp::kExpAvgSq])),
        row(static_cast<float*>(job.arrays[AdafactorOp::kExpAvgSqRow])),
        col(static_cast<float*>(job.arrays[AdafactorOp::kExpAvgSqCol])),
        paramBf16(static_cast<uint16_t*>(job.arrays[AdafactorOp::kParamBf16])),
        s(job.scalars),
        firstMoment((job.flags & AdafactorOp::kFirstMoment) != 0) {}
};

// The last pass's per-element tail, shared by both layouts: the clip and lr scale, the first
// moment, the decay, the stores. Its scalars as vectors, set once per call (inside the loops the
// compiler would reload them after every store: a float store may alias them).
template <class F32>
struct AdafactorApply {
  using V = typename F32::V;
  V updateScale, beta1, oneMinusBeta1, paramDecay;

  AdafactorApply(const AdafactorArgs& a, const PhasedWork& w)
      : updateScale(F32::set1(w.scalars[AdafactorOp::kUpdateScale])),
        beta1(F32::set1(a.s[AdafactorOp::kBeta1])),
        oneMinusBeta1(F32::set1(a.s[AdafactorOp::kOneMinusBeta1])),
        paramDecay(F32::set1(w.scalars[AdafactorOp::kParamDecay])) {}

  template <class Tag>
  void operator()(const AdafactorArgs& a, size_t i, V upd, Tag tag) const {
    using L = Lanes<F32>;
    upd = F32::mul(upd, updateScale);
    if (a.firstMoment) {
      const V m =
          F32::add(F32::mul(beta1, L::load(a.expAvg + i, tag)), F32::mul(oneMinusBeta1, upd));
      L::store(a.expAvg + i, F32::canonicalizeNan(m), tag);
      upd = m;
    }
    const V p = F32::add(F32::mul(L::load(a.param + i, tag), paramDecay), F32::neg(upd));
    L::store(a.param + i, F32::canonicalizeNan(p), tag);
    if (a.paramBf16 != nullptr) L::storeBf16(a.paramBf16 + i, p, tag);
  }
};

}  // namespace

template <class F32, class F64>
void AdafactorOp::chunks(const Job& job, PhasedWork& w, unsigned pass, size_t begin, size_t end) {
  using L = Lanes<F32>;
  using V = typename F32::V;
  const AdafactorArgs a(job);
  StagedGrad<F32> staging(job, kGradDtypeShift, a.s[kGradFactor]);
  const V eps1 = F32::set1(a.s[kEps1]);
  const V one = F32::set1(1.0f);
  const size_t R = w.shape.rows, C = w.shape.cols;
  const AdafactorApply<F32> apply(a, w);
  float staged[kSegment];

  if (!w.factored) {
    for (size_t c = begin; c < end; ++c) {
      const size_t first = c * kPhasedChunk;
      const size_t count = std::min(kPhasedChunk, w.length - first);
      if (pass == kStatistics) {
        const V beta2t = F32::set1(a.s[kBeta2t]);
        const V oneMinusBeta2t = F32::set1(a.s[kOneMinusBeta2t]);
        CanonicalSum<F64> paramSquares, updateSquares;
        forEachSegment(count, [&](size_t s, size_t n) {
          const size_t at = first + s;
          const float* grads = staging.at(at, n);
          forEachVectorShort<F32>(0, n, [&](size_t i, auto tag) {
            const V g = L::load(grads + i, tag);
            const V v = F32::add(F32::mul(beta2t, L::load(a.expAvgSq + at + i, tag)),
                                 F32::mul(oneMinusBeta2t, F32::add(F32::mul(g, g), eps1)));
            L::store(a.expAvgSq + at + i, F32::canonicalizeNan(v), tag);
            L::store(staged + i, F32::mul(F32::div(one, F32::sqrt(v)), g), tag);
          });
          updateSquares.addSquares(staged, n);
          paramSquares.addSquares(a.param + at, n);
        });
        w.chunkSums[c * kChunkSums + kParamSquares] = paramSquares.total();
        w.chunkSums[c * kChunkSums + kUpdateSquares] = updateSquares.total();
      } else {  // kApply
        forEachSegment(count, [&](size_t s, size_t n) {
          const size_t at = first + s;
          const float* grads = staging.at(at, n);
          forEachVectorShort<F32>(0, n, [&](size_t i, auto tag) {
            const V v = L::load(a.expAvgSq + at + i, tag);
            const V upd = F32::mul(F32::div(one, F32::sqrt(v)), L::load(grads + i, tag));
            apply(a, at + i, upd, tag);
          });
        });
      }
    }
    return;
  }

  for (size_t c = begin; c < end; ++c) {
    const ChunkRows rows = chunkRows(w, c);
    const size_t b = rows.batch;
    double* columns = w.colPartials + c * C;
    if (pass == kStatistics) std::fill(columns, columns + C, 0.0);
    double chunkSum = 0.0;
    for (size_t r = rows.firstRow; r < rows.endRow; ++r) {
      const size_t rowFirst = (b * R + r) * C;
      CanonicalSum<F64> sum, paramSquares;
      if (pass == kStatistics) {
        forEachSegment(C, [&](size_t s, size_t n) {
          const float* grads = staging.at(rowFirst + s, n);
          forEachVectorShort<F32>(0, n, [&](size_t i, auto tag) {
            const V g = L::load(grads + i, tag);
            L::store(staged + i, F32::add(F32::mul(g, g), eps1), tag);
          });
          sum.add(staged, n);
          addToColumns<F64>(columns + s, staged, n);
          paramSquares.addSquares(a.param + rowFirst + s, n);
        });
        float& state = a.row[b * R + r];
        state = emaOfMean(state, a.s[kBeta2t], a.s[kOneMinusBeta2t], sum.total(), C);
        chunkSum += paramSquares.total();
        continue;
      }
      // One loop per pass: a pass test inside the vector loop costs as much as its arithmetic.
      const V factor = F32::set1(rowFactor(w, a.row, b, r));
      const float* colFactors = w.colFactors + b * C;
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
      forEachSegment(C, [&](size_t s, size_t n) {  // kApply
        const size_t at = rowFirst + s;
        const float* grads = staging.at(at, n);
        forEachVectorShort<F32>(0, n, [&](size_t i, auto tag) {
          const V rowCol = F32::mul(factor, L::load(colFactors + s + i, tag));
          apply(a, at + i, F32::mul(rowCol, L::load(grads + i, tag)), tag);
        });
      });
    }
    if (pass == kStatistics) w.chunkSums[c * kChunkSums + kParamSquares] = chunkSum;
    if (pass == kUpdateNorm) w.chunkSums[c * kChunkSums + kUpdateSquares] = chunkSum;
  }
}

template <class F32>
void AdafactorOp::between(const Job& job, PhasedWork& w, unsigned pass) {
  const AdafactorArgs a(job);
  if (w.factored && pass == kStatistics) {
    updateColumns(w, a.col, a.row, a.s[kBeta2t], a.s[kOneMinusBeta2t]);
    return;
  }
  if (pass == kApply) return;
  // After the unfactored statistics pass, or the factored update-norm pass: both sums are known.
  const double n = static_cast<double>(w.length);
  const double rmsP = std::sqrt(chunkTotal(w, kParamSquares) / n);
  const double stepSize = a.s[kStepSize];
  const double eps2 = a.s[kEps2];
  // Python's max(eps2, rms) in the reference: eps2 unless rms is larger (a NaN rms gives eps2).
  const double paramScale = rmsP > eps2 ? rmsP : eps2;
  const double lrT = (job.flags & kScaleParameter) != 0 ? paramScale * stepSize : stepSize;
  const double rmsU = std::sqrt(chunkTotal(w, kUpdateSquares) / n);
  w.scalars[kUpdateScale] = static_cast<float>(lrT / clipDivisor(rmsU, a.s[kClipThreshold]));
  w.scalars[kParamDecay] = static_cast<float>(1.0 - static_cast<double>(a.s[kWeightDecay]) * lrT);
}

}  // namespace simd_adamw
