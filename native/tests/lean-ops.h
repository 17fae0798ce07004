// The lean-state ops (adamw with bf16/fp16 grads and a bf16 param copy, adamwBfloat16 with round
// to nearest even and stochastic rounding, adamwBlockwise8) and the Lion family (lion,
// lionBfloat16, lionBlockwise8: the same state formats, Lion's arithmetic) against a plain scalar
// reference written here, and every ISA against it, through the kernels directly (random ranges,
// cut at block starts for blockwise8) and through plans on 1, 2, 3 and 8 threads. Included by
// kernel-agreement.cc (random cases) and fuzz-kernels.cc (cases from fuzz bytes).
//
// The reference restates the contract (docs: /work/notes/issue12-contract.md, native/README.md) in
// the most direct form, without the kernels' code: bf16 widening as bits << 16; fp16 widening by
// the definition of binary16 (ldexp); round to nearest even as "the dropped half above 0x8000, or
// equal and the kept part odd, rounds up"; stochastic rounding as "the dropped half plus 16 random
// bits carries"; the random bits as lowbias32 of (key ^ i * 0x9e3779b9); the float32 AdamW update
// in torch's order (the gradient scaled, then negated for maximize, then L2 or decay, the moments,
// the max, the denominator, the param); the float32 Lion update in google/automl's order (scaled,
// negated, decay, the interpolation, the param along torch.sign of it, then expAvg with beta2;
// docs: /work/notes/i13-contract.md); the blockwise8 non-finite rule; quantization by scanning
// all 256 codes for the nearest (ties to the lower index). Only the two dynamic maps' values are
// taken from the implementation (native/ops/blockwise8-codes.h): they are data, bitsandbytes'
// bits, checked by their own test; the search that uses them is what is under test here.
//
// Everything is compared byte for byte: every array of every tensor, with a margin before and
// after each array that must stay untouched; every NaN stored is the canonical one (0x7fc00000,
// bf16 0x7fc0), because the reference stores those.
#pragma once

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "../dispatch.h"
#include "../ops/blockwise8-codes.h"
#include "../plan.h"

namespace simd_adamw {
namespace lean {

inline uint32_t bitsOf(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
}

inline float floatOf(uint32_t bits) {
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

// ---------------------------------------------------------------------------------------------
// The reference.

constexpr uint32_t kNan32 = 0x7fc00000u;
constexpr uint16_t kNan16 = 0x7fc0u;

inline float canonical(float x) { return std::isnan(x) ? floatOf(kNan32) : x; }

inline float widenBf16(uint16_t h) { return floatOf(static_cast<uint32_t>(h) << 16); }

// binary16: (-1)^s 2^(e - 15) (1 + m / 1024); subnormals 2^-14 (m / 1024).
inline float widenF16(uint16_t h) {
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  const float sign = (h & 0x8000) != 0 ? -1.0f : 1.0f;
  if (exponent == 31) {
    return mantissa != 0 ? std::numeric_limits<float>::quiet_NaN() : sign * INFINITY;
  }
  if (exponent == 0) return sign * std::ldexp(static_cast<float>(mantissa), -24);
  return sign * std::ldexp(static_cast<float>(1024 + mantissa), exponent - 25);
}

inline uint16_t roundBf16(float x) {
  if (std::isnan(x)) return kNan16;
  const uint32_t bits = bitsOf(x);
  const uint32_t kept = bits >> 16;
  const uint32_t dropped = bits & 0xffffu;
  const bool up = dropped > 0x8000u || (dropped == 0x8000u && (kept & 1u) != 0);
  return static_cast<uint16_t>(kept + (up ? 1u : 0u));
}

inline uint16_t roundBf16Stochastic(float x, uint32_t random16) {
  if (std::isnan(x)) return kNan16;
  const uint32_t bits = bitsOf(x);
  const bool up = (bits & 0xffffu) + random16 >= 0x10000u;
  return static_cast<uint16_t>((bits >> 16) + (up ? 1u : 0u));
}

inline uint32_t lowbias32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

inline uint32_t elementRandom(uint32_t key, size_t i) {
  return lowbias32(key ^ (static_cast<uint32_t>(i) * 0x9e3779b9u));
}

// The index of the map value nearest to y, ties to the lower index, by scanning every code.
inline uint8_t nearestCodeByScan(const float* map, float y) {
  size_t best = 0;
  double bestDistance = std::fabs(static_cast<double>(map[0]) - y);
  for (size_t k = 1; k < 256; ++k) {
    const double distance = std::fabs(static_cast<double>(map[k]) - y);
    if (distance < bestDistance) {
      best = k;
      bestDistance = distance;
    }
  }
  return static_cast<uint8_t>(best);
}

inline bool isLionOp(OpId op) { return std::strcmp(opLayout(op).family, LionFamily::kFamily) == 0; }

// The ops of op's family, in OpId order (a plan's tensors are all of one family).
inline std::vector<OpId> familyOps(OpId op) {
  std::vector<OpId> ops;
  for (unsigned k = 0; k < kOpCount; ++k) {
    if (std::strcmp(opLayout(static_cast<OpId>(k)).family, opLayout(op).family) == 0) {
      ops.push_back(static_cast<OpId>(k));
    }
  }
  return ops;
}

// The most scalars of any family.
constexpr size_t kMaxScalars =
    std::max<size_t>(AdamwFamily::kScalarCount, LionFamily::kScalarCount);

// The public flags and the scalars of one run, as a plan gets them (gradFactor only with scale).
struct Run {
  uint32_t flags = 0;  // the public flags of the family of the run's tensors
  float scalars[kMaxScalars] = {};
  bool scale = false;  // the gradient is multiplied by gradFactor first (the fused step)
  float gradFactor = 1.0f;
};

// One tensor: its op, grad dtype, length, and each of its op's arrays as bytes (empty: null), with
// kMargin elements before and after the tensor's elements.
constexpr size_t kMargin = 3;

struct Tensor {
  OpId op = kOpAdamw;
  GradDtype dtype = kGradFloat32;
  size_t length = 0;
  uint32_t seed = 0;
  std::vector<std::vector<uint8_t>> arrays;

  const OpLayout& layout() const { return opLayout(op); }
  size_t elementSize(size_t a) const { return elementBytes(layout().arrayTypes[a], dtype); }
  size_t count(size_t a) const {  // elements of array a (without the margins)
    return layout().arrayLengths[a] == ArrayLength::kBlocks
               ? (length + layout().blockSize - 1) / layout().blockSize
               : length;
  }
  bool has(size_t a) const { return !arrays[a].empty(); }
  void* data(size_t a) { return has(a) ? arrays[a].data() + kMargin * elementSize(a) : nullptr; }
  template <class T>
  T get(size_t a, size_t i) const {
    T x;
    std::memcpy(&x, arrays[a].data() + (kMargin + i) * sizeof(T), sizeof x);
    return x;
  }
  template <class T>
  void set(size_t a, size_t i, T x) {
    std::memcpy(arrays[a].data() + (kMargin + i) * sizeof(T), &x, sizeof x);
  }
  float grad(size_t i) const {
    if (dtype == kGradFloat32) return get<float>(1, i);
    const uint16_t h = get<uint16_t>(1, i);
    return dtype == kGradBfloat16 ? widenBf16(h) : widenF16(h);
  }
};

struct Moments {
  float param, expAvg, expAvgSq, secondMoment;
};

// The float32 update of one element, in torch's order.
inline Moments referenceMath(const Run& run, float g, float param, float expAvg, float expAvgSq,
                             float maxExpAvgSq) {
  const float* s = run.scalars;
  if (run.scale) g = g * run.gradFactor;
  if ((run.flags & AdamwFamily::kMaximize) != 0) g = -g;
  if ((run.flags & AdamwFamily::kCoupled) != 0) {
    g = g + s[AdamwFamily::kL2] * param;
  } else {
    param = param * s[AdamwFamily::kDecay];
  }
  Moments r;
  r.expAvg = s[AdamwFamily::kBeta1] * expAvg + s[AdamwFamily::kOneMinusBeta1] * g;
  r.expAvgSq = s[AdamwFamily::kBeta2] * expAvgSq + (s[AdamwFamily::kOneMinusBeta2] * g) * g;
  r.secondMoment = r.expAvgSq;
  if ((run.flags & AdamwFamily::kAmsgrad) != 0) {
    // torch.maximum: NaN if either is NaN (the first one's NaN when both are).
    // torch.maximum: NaN if either is NaN (the old one's when both are); of equal values (+0 and
    // -0) the new one.
    r.secondMoment = std::isnan(maxExpAvgSq) || maxExpAvgSq > r.expAvgSq ? maxExpAvgSq : r.expAvgSq;
  }
  const float denom = std::sqrt(r.secondMoment) + s[AdamwFamily::kEpsHat];
  r.param = param + s[AdamwFamily::kNegStepSize] * (r.expAvg / denom);
  return r;
}

// A blockwise8 block's new values `values` (elements start.. of block b) as codes of `map` in
// array `codes` and their absmax in array codes + 1.
inline void quantizeReference(Tensor& t, size_t codes, const float* map, size_t b, size_t start,
                              const std::vector<float>& values) {
  float absmax = 0.0f;
  for (float x : values) absmax = std::max(absmax, std::fabs(x));
  t.set<float>(codes + 1, b, absmax);
  for (size_t j = 0; j < values.size(); ++j) {
    const float y = absmax > 0.0f ? values[j] / absmax : 0.0f;
    t.set<uint8_t>(codes, start + j, nearestCodeByScan(map, y));
  }
}

// torch.sign: +-1 for nonzero numbers, +-0 itself, NaN for NaN.
inline float torchSign(float x) {
  if (std::isnan(x)) return floatOf(kNan32);
  if (x > 0.0f) return 1.0f;
  if (x < 0.0f) return -1.0f;
  return x;
}

struct LionValues {
  float param, expAvg;
};

// The float32 Lion update of one element, in the reference's order.
inline LionValues lionReferenceMath(const Run& run, float g, float param, float expAvg) {
  const float* s = run.scalars;
  if (run.scale) g = g * run.gradFactor;
  if ((run.flags & LionFamily::kMaximize) != 0) g = -g;
  param = param * s[LionFamily::kDecay];
  const float interpolated = s[LionFamily::kBeta1] * expAvg + s[LionFamily::kOneMinusBeta1] * g;
  LionValues r;
  r.param = param + s[LionFamily::kNegLr] * torchSign(interpolated);
  r.expAvg = s[LionFamily::kBeta2] * expAvg + s[LionFamily::kOneMinusBeta2] * g;
  return r;
}

// One Lion step of `t` in place. Arrays: param, grad, expAvg (float32, bf16 or codes), then
// expAvgAbsmax for blockwise8, then paramBf16.
inline void lionReferenceStep(Tensor& t, const Run& run) {
  if (t.op != kOpLionBlockwise8) {
    const bool bf16 = t.op == kOpLionBfloat16;
    const bool stochastic = bf16 && (run.flags & LionFamily::kStochasticRounding) != 0;
    for (size_t i = 0; i < t.length; ++i) {
      const float expAvg = bf16 ? widenBf16(t.get<uint16_t>(2, i)) : t.get<float>(2, i);
      const LionValues r = lionReferenceMath(run, t.grad(i), t.get<float>(0, i), expAvg);
      if (!bf16) {
        t.set<float>(2, i, canonical(r.expAvg));
      } else {
        const uint32_t random16 = elementRandom(t.seed, i) & 0xffffu;
        t.set<uint16_t>(2, i,
                        stochastic ? roundBf16Stochastic(r.expAvg, random16) : roundBf16(r.expAvg));
      }
      t.set<float>(0, i, canonical(r.param));
      if (t.has(3)) t.set<uint16_t>(3, i, roundBf16(r.param));
    }
    return;
  }
  const size_t block = 256;
  for (size_t start = 0; start < t.length; start += block) {
    const size_t b = start / block;
    const size_t n = std::min(block, t.length - start);
    std::vector<float> expAvgs;
    for (size_t i = start; i < start + n; ++i) {
      const float m0 = kSignedDynamicMap[t.get<uint8_t>(2, i)] * t.get<float>(3, b);
      const float oldParam = t.get<float>(0, i);
      LionValues r = lionReferenceMath(run, t.grad(i), oldParam, m0);
      // The contract's rule as it states it: a gradient or a new moment that is not finite.
      if (!std::isfinite(t.grad(i)) || !std::isfinite(r.expAvg)) r = LionValues{oldParam, 0.0f};
      t.set<float>(0, i, canonical(r.param));
      if (t.has(4)) t.set<uint16_t>(4, i, roundBf16(r.param));
      expAvgs.push_back(r.expAvg);
    }
    quantizeReference(t, 2, kSignedDynamicMap, b, start, expAvgs);
  }
}

// One step of `t` in place, as the contract defines it.
inline void referenceStep(Tensor& t, const Run& run) {
  if (isLionOp(t.op)) {
    lionReferenceStep(t, run);
    return;
  }
  const bool amsgrad = (run.flags & AdamwFamily::kAmsgrad) != 0;
  if (t.op == kOpAdamw || t.op == kOpAdamwBfloat16) {
    const bool bf16 = t.op == kOpAdamwBfloat16;
    const bool stochastic = bf16 && (run.flags & AdamwFamily::kStochasticRounding) != 0;
    for (size_t i = 0; i < t.length; ++i) {
      const auto load = [&](size_t a) {
        return bf16 ? widenBf16(t.get<uint16_t>(a, i)) : t.get<float>(a, i);
      };
      const Moments r = referenceMath(run, t.grad(i), t.get<float>(0, i), load(2), load(3),
                                      amsgrad ? load(4) : 0.0f);
      const uint32_t random = elementRandom(t.seed, i);
      const auto store = [&](size_t a, float x, uint32_t random16) {
        if (!bf16) {
          t.set<float>(a, i, canonical(x));
        } else {
          t.set<uint16_t>(a, i, stochastic ? roundBf16Stochastic(x, random16) : roundBf16(x));
        }
      };
      store(2, r.expAvg, random & 0xffffu);
      store(3, r.expAvgSq, random >> 16);
      if (amsgrad) store(4, r.secondMoment, random >> 16);
      t.set<float>(0, i, canonical(r.param));
      if (t.has(5)) t.set<uint16_t>(5, i, roundBf16(r.param));
    }
    return;
  }
  // adamwBlockwise8: arrays param, grad, expAvg, expAvgAbsmax, expAvgSq, expAvgSqAbsmax,
  // maxExpAvgSq, maxExpAvgSqAbsmax, paramBf16.
  const float* signedMap = kSignedDynamicMap;
  const float* unsignedMap = kUnsignedDynamicMap;
  const size_t block = 256;
  for (size_t start = 0; start < t.length; start += block) {
    const size_t b = start / block;
    const size_t n = std::min(block, t.length - start);
    std::vector<float> moments[3];
    for (size_t i = start; i < start + n; ++i) {
      const float m0 = signedMap[t.get<uint8_t>(2, i)] * t.get<float>(3, b);
      const float v0 = unsignedMap[t.get<uint8_t>(4, i)] * t.get<float>(5, b);
      const float max0 = amsgrad ? unsignedMap[t.get<uint8_t>(6, i)] * t.get<float>(7, b) : 0.0f;
      const float oldParam = t.get<float>(0, i);
      Moments r = referenceMath(run, t.grad(i), oldParam, m0, v0, max0);
      if (!std::isfinite(r.expAvg) || !std::isfinite(r.expAvgSq) ||
          (amsgrad && !std::isfinite(r.secondMoment))) {
        r = Moments{oldParam, 0.0f, 0.0f, 0.0f};
      }
      t.set<float>(0, i, canonical(r.param));
      if (t.has(8)) t.set<uint16_t>(8, i, roundBf16(r.param));
      moments[0].push_back(r.expAvg);
      moments[1].push_back(r.expAvgSq);
      moments[2].push_back(r.secondMoment);
    }
    for (size_t k = 0; k < (amsgrad ? 3u : 2u); ++k) {
      quantizeReference(t, 2 + 2 * k, k == 0 ? signedMap : unsignedMap, b, start, moments[k]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Running the implementation.

inline Job jobOf(Tensor& t, uint32_t kernelFlags, const float* scalars) {
  Job job{};
  const OpLayout& l = t.layout();
  for (size_t a = 0; a < l.arrayCount; ++a) {
    job.arrays[a] = t.data(a);
    job.arrayBytes[a] = t.has(a) ? t.count(a) * t.elementSize(a) : 0;
  }
  job.length = t.length;
  job.scalars = scalars;
  job.flags = kernelFlags;
  job.seed = t.seed;
  job.op = t.op;
  job.blockSize = static_cast<uint32_t>(l.blockSize);
  job.gradDtype = t.dtype;
  return job;
}

// The internal bits createPlan gives a tensor (its grad dtype, its paramBf16).
inline uint32_t tensorFlagsOf(const Tensor& t) {
  const OpLayout& l = t.layout();
  uint32_t flags = static_cast<uint32_t>(t.dtype) << l.gradDtypeShift;
  for (size_t o = 0; o < l.optionalCount; ++o) {
    if (l.optionalArrays[o].perTensor && t.has(l.optionalArrays[o].array)) {
      flags |= l.optionalArrays[o].flag;
    }
  }
  return flags;
}

// The kernel of `isa` directly, over [0, length) cut at `cuts` (block starts for blockwise8).
inline void runKernel(const IsaInfo& isa, Tensor& t, const Run& run,
                      const std::vector<size_t>& cuts) {
  const OpLayout& l = t.layout();
  float scalars[kMaxScalars + 1];
  std::memcpy(scalars, run.scalars, l.scalarCount * sizeof(float));
  scalars[l.scalarCount] = run.gradFactor;
  uint32_t flags = run.flags | (run.scale ? l.scaleGradFlag : 0u);
  toKernelFlags(l, &flags, &scalars[l.scalarCount]);
  const Job job = jobOf(t, flags | tensorFlagsOf(t), scalars);
  size_t begin = 0;
  for (size_t cut : cuts) {
    if (cut > begin && cut < t.length) {
      isa.kernels->ops[t.op](job, begin, cut);
      begin = cut;
    }
  }
  if (begin < t.length) isa.kernels->ops[t.op](job, begin, t.length);
}

// A plan of all the tensors, run once with `isa` on `threads` threads; the scale through the fused
// step (gradScale = 1 / gradFactor exactly: the factors used are powers of two).
inline void runPlanOf(const IsaInfo& isa, std::vector<Tensor>& tensors, const Run& run,
                      unsigned threads) {
  JobList list;
  std::vector<uint32_t> tensorFlags;
  std::vector<uint32_t> seeds;
  for (Tensor& t : tensors) {
    list.jobs.push_back(jobOf(t, 0, nullptr));
    tensorFlags.push_back(tensorFlagsOf(t));
    seeds.push_back(t.seed);
  }
  Plan plan(tensors[0].op, std::move(list), std::move(tensorFlags));
  std::vector<double> scalars(run.scalars, run.scalars + tensors[0].layout().scalarCount);
  const uint32_t flags[1] = {run.flags};
  std::vector<uint32_t> sets(tensors.size(), 0);
  const PlanRun planRun{scalars.data(), scalars.size(), flags,        1,
                        sets.data(),    sets.size(),    seeds.data(), seeds.size()};
  const std::string problem = plan.check(planRun);
  if (!problem.empty()) {
    std::printf("lean: plan refused a valid run: %s\n", problem.c_str());
    std::abort();
  }
  plan.load(planRun);
  const TrainStepRequest request{INFINITY, 1.0 / static_cast<double>(run.gradFactor), false, false};
  plan.run(isa, threads, run.scale ? &request : nullptr);
}

// ---------------------------------------------------------------------------------------------
// Cases.

using Rng = std::mt19937_64;

inline uint64_t draw(Rng& rng, uint64_t lo, uint64_t hi) {  // inclusive
  return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
}

// Values where a 16-bit rounding is interesting: ties and near ties of the dropped half, both
// parities, subnormals, +-0, the largest finite floats (which round to Inf), Inf, NaN, or ordinary.
inline float roundingCase(Rng& rng) {
  const uint32_t sign = draw(rng, 0, 1) != 0 ? 0x80000000u : 0u;
  const uint32_t lows[] = {0x8000u, 0x7fffu, 0x8001u, 0x0000u, 0xffffu, 0x0001u};
  switch (draw(rng, 0, 7)) {
    case 0:
      return floatOf(sign | static_cast<uint32_t>(draw(rng, 0, 0x7fffff)));  // subnormal or 0
    case 1:
      return floatOf(sign | 0x7f7f0000u | lows[draw(rng, 0, 5)]);  // near FLT_MAX
    case 2:
      return floatOf(sign | (draw(rng, 0, 1) != 0 ? 0x7f800000u : 0x7fc00000u | 0x1234u));
    case 3:
      return floatOf(sign);
    default: {
      const uint32_t top = static_cast<uint32_t>(draw(rng, 0x3000, 0x4300)) << 16;
      return floatOf(sign | top | lows[draw(rng, 0, 5)]);
    }
  }
}

inline float ordinary(Rng& rng, int low = -30, int high = 4) {
  const int exponent = static_cast<int>(draw(rng, 0, static_cast<uint64_t>(high - low))) + low;
  const double mantissa = 1.0 + static_cast<double>(draw(rng, 0, (1u << 24) - 1)) / (1u << 24);
  const double magnitude = std::ldexp(mantissa, exponent);
  return static_cast<float>(draw(rng, 0, 1) != 0 ? -magnitude : magnitude);
}

enum class Values { kOrdinary, kSpecials, kRounding };

inline float value(Rng& rng, Values kind) {
  if (kind == Values::kRounding) return roundingCase(rng);
  if (kind == Values::kSpecials && draw(rng, 0, 15) == 0) {
    const uint32_t specials[] = {0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u,
                                 0x7f800001u, 0x00000001u, 0x80000000u, 0x7f7fffffu};
    return floatOf(specials[draw(rng, 0, 7)]);
  }
  return ordinary(rng);
}

inline uint16_t halfValue(Rng& rng, Values kind) {
  if (kind != Values::kOrdinary && draw(rng, 0, 15) == 0) {
    const uint16_t specials[] = {0x7c00, 0xfc00, 0x7e00, 0xfd01, 0x0001, 0x83ff, 0x7bff, 0x8000};
    return specials[draw(rng, 0, 7)];
  }
  const uint64_t exponent = draw(rng, 0, 30);  // 0: subnormal
  return static_cast<uint16_t>((draw(rng, 0, 1) << 15) | (exponent << 10) | draw(rng, 0, 1023));
}

// A tensor of `op` with random contents for a run with `flags`.
inline Tensor randomTensor(Rng& rng, OpId op, GradDtype dtype, size_t length, uint32_t flags,
                           Values kind) {
  Tensor t;
  t.op = op;
  t.dtype = dtype;
  t.length = length;
  t.seed = static_cast<uint32_t>(draw(rng, 0, 0xffffffffu));
  const OpLayout& l = t.layout();
  t.arrays.resize(l.arrayCount);
  const bool withParamBf16 = draw(rng, 0, 1) != 0;
  for (size_t a = 0; a < l.arrayCount; ++a) {
    bool present = true;
    for (size_t o = 0; o < l.optionalCount; ++o) {
      if (l.optionalArrays[o].array != a) continue;
      present =
          l.optionalArrays[o].perTensor ? withParamBf16 : (flags & l.optionalArrays[o].flag) != 0;
    }
    if (!present) continue;
    const size_t size = t.elementSize(a);
    const size_t n = t.count(a);
    t.arrays[a].resize((n + 2 * kMargin) * size);
    // Margins and untouched arrays: a recognisable pattern.
    for (size_t byte = 0; byte < t.arrays[a].size(); ++byte) {
      t.arrays[a][byte] = static_cast<uint8_t>(0xa5 ^ byte);
    }
    // Second moments (of the 16/32-bit ops; codes index the unsigned map) are >= 0 unless the
    // case asks for specials.
    const bool nonNegative =
        l.arrayTypes[a] != ArrayType::kUint8 &&
        (std::strcmp(l.arrays[a], "expAvgSq") == 0 || std::strcmp(l.arrays[a], "maxExpAvgSq") == 0);
    for (size_t i = 0; i < n; ++i) {
      float x = value(rng, kind);
      if (nonNegative && kind != Values::kSpecials) x = std::fabs(x);
      switch (l.arrayTypes[a]) {
        case ArrayType::kFloat32:
          // Absmax arrays: a moment's scale, >= 0 (a NaN or Inf one only with specials).
          t.set<float>(a, i,
                       l.arrayLengths[a] == ArrayLength::kBlocks && kind != Values::kSpecials
                           ? std::fabs(ordinary(rng, -20, 0))
                           : x);
          break;
        case ArrayType::kGrad:
          if (dtype == kGradFloat32) {
            t.set<float>(a, i, x);
          } else {
            t.set<uint16_t>(a, i,
                            dtype == kGradBfloat16 ? static_cast<uint16_t>(bitsOf(x) >> 16)
                                                   : halfValue(rng, kind));
          }
          break;
        case ArrayType::kBfloat16:
          t.set<uint16_t>(a, i, static_cast<uint16_t>(bitsOf(x) >> 16));
          break;
        case ArrayType::kUint8:
          t.set<uint8_t>(a, i, static_cast<uint8_t>(draw(rng, 0, 255)));
          break;
      }
    }
  }
  return t;
}

// Lion's scalars as lib/ computes them, or, in the rounding cases, a step that passes values
// through (beta2 = 0, oneMinusBeta2 = 1, no decay, lr 0: expAvg becomes g, the param stays).
inline void lionRandomScalars(Rng& rng, Values kind, float* s) {
  if (kind == Values::kRounding) {
    s[LionFamily::kBeta1] = 0.5f;
    s[LionFamily::kOneMinusBeta1] = 0.5f;
    s[LionFamily::kBeta2] = 0.0f;
    s[LionFamily::kOneMinusBeta2] = 1.0f;
    s[LionFamily::kDecay] = 1.0f;
    s[LionFamily::kNegLr] = 0.0f;
    return;
  }
  const double lr = std::ldexp(1.0, -static_cast<int>(draw(rng, 1, 20)));
  const double betas1[] = {0.9, 0.95, 0.0, 0.5};
  const double betas2[] = {0.99, 0.98, 0.999, 0.0};
  const double weightDecays[] = {0.0, 0.1, 1.0};
  const double beta1 = betas1[draw(rng, 0, 3)];
  const double beta2 = betas2[draw(rng, 0, 3)];
  const double weightDecay = weightDecays[draw(rng, 0, 2)];
  s[LionFamily::kBeta1] = static_cast<float>(beta1);
  s[LionFamily::kOneMinusBeta1] = static_cast<float>(1 - beta1);
  s[LionFamily::kBeta2] = static_cast<float>(beta2);
  s[LionFamily::kOneMinusBeta2] = static_cast<float>(1 - beta2);
  s[LionFamily::kDecay] = static_cast<float>(1 - lr * weightDecay);
  s[LionFamily::kNegLr] = static_cast<float>(-lr);
}

// Scalars as lib/ computes them (in double, rounded once), or, in the rounding cases, a step that
// passes values through (beta1 = beta2 = 0, one-minus = 1, no decay, no step: the moments are g and
// g * g and the param unchanged), so that the stores round exactly the values the case chose.
inline Run randomRun(Rng& rng, OpId op, uint32_t flags, bool scale, Values kind) {
  Run run;
  run.flags = flags;
  run.scale = scale;
  run.gradFactor = scale ? std::ldexp(1.0f, static_cast<int>(draw(rng, 0, 30)) - 20) : 1.0f;
  float* s = run.scalars;
  if (isLionOp(op)) {
    lionRandomScalars(rng, kind, s);
    return run;
  }
  if (kind == Values::kRounding) {
    s[AdamwFamily::kBeta1] = 0.0f;
    s[AdamwFamily::kOneMinusBeta1] = 1.0f;
    s[AdamwFamily::kBeta2] = 0.0f;
    s[AdamwFamily::kOneMinusBeta2] = 1.0f;
    s[AdamwFamily::kDecay] = 1.0f;
    s[AdamwFamily::kL2] = 0.0f;
    s[AdamwFamily::kNegStepSize] = 0.0f;
    s[AdamwFamily::kEpsHat] = 1e-8f;
    return run;
  }
  const double lr = std::ldexp(1.0, -static_cast<int>(draw(rng, 1, 20)));
  const double beta1 = draw(rng, 0, 3) == 0 ? 0.5 : 0.9;
  const double beta2 = draw(rng, 0, 3) == 0 ? 0.99 : 0.999;
  const double weightDecay = draw(rng, 0, 2) == 0 ? 0.0 : 0.01;
  const double step = static_cast<double>(draw(rng, 1, 1000));
  const double bc1 = 1 - std::pow(beta1, step);
  const double sqrtBc2 = std::sqrt(1 - std::pow(beta2, step));
  const bool coupled = (flags & AdamwFamily::kCoupled) != 0;
  s[AdamwFamily::kBeta1] = static_cast<float>(beta1);
  s[AdamwFamily::kOneMinusBeta1] = static_cast<float>(1 - beta1);
  s[AdamwFamily::kBeta2] = static_cast<float>(beta2);
  s[AdamwFamily::kOneMinusBeta2] = static_cast<float>(1 - beta2);
  s[AdamwFamily::kDecay] = static_cast<float>(coupled ? 1 : 1 - lr * weightDecay);
  s[AdamwFamily::kL2] = static_cast<float>(coupled ? weightDecay : 0);
  s[AdamwFamily::kNegStepSize] = static_cast<float>(-lr / bc1 * sqrtBc2);
  s[AdamwFamily::kEpsHat] = static_cast<float>(1e-8 * sqrtBc2);
  return run;
}

struct Case {
  std::vector<Tensor> tensors;
  Run run;
  std::vector<std::vector<size_t>> cuts;  // per tensor, where the direct kernel calls split it
  std::string label;
};

inline const char* opName(OpId op) { return opLayout(op).name; }
inline const char* dtypeName(GradDtype d) {
  return d == kGradFloat32 ? "f32" : d == kGradBfloat16 ? "bf16" : "fp16";
}

// Tail lengths 0..70, a few block-sized ones, and now and then several large tensors (enough
// elements for 8 threads' parts to fall inside tensors and, for blockwise8, inside blocks).
inline Case randomCase(Rng& rng, OpId firstOp, GradDtype firstDtype, uint32_t flags, bool scale,
                       size_t length) {
  Case c;
  const uint64_t kindDraw = draw(rng, 0, 5);
  const Values kind = kindDraw == 0   ? Values::kSpecials
                      : kindDraw == 1 ? Values::kRounding
                                      : Values::kOrdinary;
  c.run = randomRun(rng, firstOp, flags, scale, kind);
  const bool large = length == SIZE_MAX;
  const size_t tensorCount = large ? draw(rng, 2, 4) : 1;
  const std::vector<OpId> ops = familyOps(firstOp);  // the other tensors' ops: of one plan
  for (size_t k = 0; k < tensorCount; ++k) {
    const OpId op = k == 0 ? firstOp : ops[draw(rng, 0, ops.size() - 1)];
    const GradDtype dtype =
        k == 0 ? firstDtype : static_cast<GradDtype>(draw(rng, 0, kGradDtypeCount - 1));
    const size_t n = large ? draw(rng, 20000, 90000) : length;
    c.tensors.push_back(randomTensor(rng, op, dtype, n, flags, kind));
    std::vector<size_t> cuts;
    const size_t block = opLayout(op).blockSize;
    for (uint64_t p = draw(rng, 0, 3); p > 0; --p) {
      const size_t at = static_cast<size_t>(draw(rng, 0, n));
      cuts.push_back(at - at % block);
    }
    std::sort(cuts.begin(), cuts.end());
    c.cuts.push_back(cuts);
  }
  char label[160];
  std::snprintf(label, sizeof label, "%s grad %s length %zu%s flags %u%s%s", opName(firstOp),
                dtypeName(firstDtype), c.tensors[0].length, large ? " (+ more tensors)" : "", flags,
                scale ? " scaled" : "",
                kind == Values::kRounding   ? " (rounding values)"
                : kind == Values::kSpecials ? " (specials)"
                                            : "");
  c.label = label;
  return c;
}

// ---------------------------------------------------------------------------------------------
// Comparison.

struct Totals {
  uint64_t runs = 0;
  uint64_t elements = 0;
  uint64_t mismatches = 0;
};

constexpr uint64_t kShown = 8;

// Compares every byte of every tensor; prints the first few differing elements.
inline void compare(const std::vector<Tensor>& want, const std::vector<Tensor>& got,
                    const std::string& what, Totals& totals) {
  ++totals.runs;
  for (size_t k = 0; k < want.size(); ++k) {
    const Tensor& w = want[k];
    totals.elements += w.length;
    for (size_t a = 0; a < w.arrays.size(); ++a) {
      if (w.arrays[a] == got[k].arrays[a]) continue;
      const size_t size = w.elementSize(a);
      for (size_t e = 0; e * size < w.arrays[a].size(); ++e) {
        uint64_t x = 0, y = 0;
        std::memcpy(&x, w.arrays[a].data() + e * size, size);
        std::memcpy(&y, got[k].arrays[a].data() + e * size, size);
        if (x == y) continue;
        ++totals.mismatches;
        if (totals.mismatches <= kShown) {
          std::printf("MISMATCH %s: tensor %zu (%s, grad %s) %s[%lld]: want 0x%" PRIx64
                      ", got 0x%" PRIx64 "\n",
                      what.c_str(), k, opName(w.op), dtypeName(w.dtype), w.layout().arrays[a],
                      static_cast<long long>(e) - static_cast<long long>(kMargin), x, y);
        }
      }
    }
  }
}

const unsigned kThreadCounts[] = {1, 2, 3, 8};

// The reference, then every runnable ISA: its kernels called directly over the case's cuts, and
// plans on every thread count.
inline void checkCase(const Case& c, Totals& totals) {
  std::vector<Tensor> want = c.tensors;
  for (Tensor& t : want) referenceStep(t, c.run);
  for (const IsaInfo& isa : compiledIsas()) {
    if (!isa.supported()) continue;
    std::vector<Tensor> direct = c.tensors;
    for (size_t k = 0; k < direct.size(); ++k) runKernel(isa, direct[k], c.run, c.cuts[k]);
    compare(want, direct, std::string(isa.name) + " kernel, " + c.label, totals);
    for (unsigned threads : kThreadCounts) {
      std::vector<Tensor> planned = c.tensors;
      runPlanOf(isa, planned, c.run, threads);
      compare(want, planned,
              std::string(isa.name) + " plan " + std::to_string(threads) + " threads, " + c.label,
              totals);
    }
  }
}

// Every op x grad dtype x public flag set of its family (stochasticRounding included: only the
// bfloat16 ops read it) x scaled or not x tail length 0..70, and `extra` random cases with larger
// lengths and several tensors. Returns whether everything agreed.
inline bool checkLeanOps(uint64_t seed, uint64_t extra) {
  Rng rng(seed);
  // Per family (the order of kFamilies), so that the summary shows each was exercised.
  const char* const kFamilies[] = {AdamwFamily::kFamily, LionFamily::kFamily};
  Totals totals[2];
  const auto totalsOf = [&](OpId op) -> Totals& { return totals[isLionOp(op) ? 1 : 0]; };
  for (unsigned op = 0; op < kOpCount; ++op) {
    const uint32_t kPublic = opLayout(static_cast<OpId>(op)).publicFlags;
    for (unsigned dtype = 0; dtype < kGradDtypeCount; ++dtype) {
      for (uint32_t flags = 0; flags <= kPublic; ++flags) {
        if ((flags & ~kPublic) != 0) continue;
        for (int scale = 0; scale < 2; ++scale) {
          for (size_t length = 0; length <= 70; ++length) {
            // Every length for the float32 op's most common flags, a third of them elsewhere (the
            // tails of every width are all among any 16 consecutive lengths).
            if ((flags != 0 || scale != 0) && length % 3 != (flags + dtype) % 3) continue;
            checkCase(randomCase(rng, static_cast<OpId>(op), static_cast<GradDtype>(dtype), flags,
                                 scale != 0, length),
                      totalsOf(static_cast<OpId>(op)));
          }
        }
      }
    }
  }
  const size_t largeLengths[] = {255, 256, 257, 511, 513, 1000, 4099, SIZE_MAX};
  for (uint64_t k = 0; k < extra; ++k) {
    const OpId op = static_cast<OpId>(draw(rng, 0, kOpCount - 1));
    const GradDtype dtype = static_cast<GradDtype>(draw(rng, 0, kGradDtypeCount - 1));
    const uint32_t kPublic = opLayout(op).publicFlags;
    const uint32_t flags = static_cast<uint32_t>(draw(rng, 0, kPublic)) & kPublic;
    const size_t length = largeLengths[draw(rng, 0, 7)];
    checkCase(randomCase(rng, op, dtype, flags, draw(rng, 0, 1) != 0, length), totalsOf(op));
  }
  bool pass = true;
  for (size_t f = 0; f < 2; ++f) {
    const Totals& t = totals[f];
    std::printf("  lean ops (%s family) vs reference: %" PRIu64 " runs, %" PRIu64
                " elements: %s (%" PRIu64 " mismatches)\n",
                kFamilies[f], t.runs, t.elements, t.mismatches == 0 ? "agree" : "DISAGREE",
                t.mismatches);
    pass = pass && t.mismatches == 0 && t.runs > 0;
  }
  return pass;
}

}  // namespace lean
}  // namespace simd_adamw
