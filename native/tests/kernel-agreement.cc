// Bitwise agreement of every SIMD kernel with the scalar kernel, at the C++ level, without Node.
//
// native/ops/adamw.h, over each ISA's vector layer (native/simd/), gives the scalar ISA's bits.
// This program checks it on random cases: lengths 0..100 and some large ones, arbitrary [begin,
// end) ranges split into pieces at random points (elements are independent, so a split must not
// change a bit), unaligned array starts, all sixteen flag combinations (the fused step's gradient
// factor included), realistic and extreme scalars, and inputs including NaN (quiet and signalling,
// random payloads and signs), +-Inf, +-0, subnormals and huge values. Elements outside [begin, end)
// must be left untouched.
//
// It links native/dispatch.cc and so tests every kernel compiled for the target that the CPU can
// run (CPUID decides on x86-64; AVX paths the CPU lacks are reported as skipped). Built by
// scripts/test-kernels-cross.sh natively on x86-64 and, with a cross compiler, for AArch64 (run
// under qemu-aarch64). The per-case check, `compareKernels`, takes a fully described case, so a
// fuzzer can drive it from its own bytes instead of the random generator here.
//
//   kernel-agreement [--cases N] [--seed S]
//
// "Agree" means: every float of every array, margins included, identical bit for bit to the scalar
// kernel's (+0 and -0 differ, and so do NaNs with different bits). That includes NaNs because every
// kernel stores each NaN result as the one canonical quiet NaN 0x7fc00000 (canonicalizeNan in
// native/simd/), so the program also checks that every NaN a kernel stores, the
// scalar kernel's included, is exactly 0x7fc00000.
//
// Exit status: 0 when every kernel agrees on every case, 1 on any disagreement or non-canonical
// NaN (the first few are printed with the case, the inputs and the outputs in hex), 2 on bad
// arguments.
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../dispatch.h"
#include "adamw-support.h"
#include "lean-ops.h"

namespace simd_adamw {
namespace {

uint32_t bitsOf(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
}

float floatOf(uint32_t bits) {
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

bool isNanBits(uint32_t bits) { return (bits & 0x7f800000u) == 0x7f800000u && (bits & 0x7fffffu); }

// The only NaN a kernel may store (the kernels' kCanonicalNanBits, restated here as the promise
// under test rather than included from the kernels' own header).
constexpr uint32_t kCanonicalNanBits = 0x7fc00000u;

// ---------------------------------------------------------------------------------------------
// A case: the five arrays (with untouched margins around the range), scalars, flags, range.

constexpr size_t kArrays = 5;
const char* const kArrayNames[kArrays] = {"param", "grad", "expAvg", "expAvgSq", "maxExpAvgSq"};

struct Case {
  // Each array holds `padding + length + kTrailer` floats; the tensor starts at `padding`, so
  // different paddings give different alignments. Floats past `length` catch stray stores.
  std::vector<float> arrays[kArrays];
  size_t padding = 0;
  size_t length = 0;
  AdamwScalars scalars{};
  uint32_t flags = 0;
  size_t begin = 0;
  size_t end = 0;
  std::vector<size_t> splits;  // where the SIMD run cuts [begin, end) into separate calls
};

constexpr size_t kTrailer = 19;

AdamwTensor tensorOf(std::vector<float> (&arrays)[kArrays], const Case& c) {
  const bool amsgrad = (c.flags & kAdamwAmsgrad) != 0;
  return AdamwTensor{arrays[0].data() + c.padding,
                     arrays[1].data() + c.padding,
                     arrays[2].data() + c.padding,
                     arrays[3].data() + c.padding,
                     amsgrad ? arrays[4].data() + c.padding : nullptr,
                     c.length};
}

// Whether the kernel writes arrays[array][index]: the range of param, expAvg and expAvgSq, and of
// maxExpAvgSq with amsgrad. grad, the margins and maxExpAvgSq without amsgrad are only read, so
// they keep the input's bits, NaN payloads included.
bool isWritten(const Case& c, size_t array, size_t index) {
  if (array == 1) return false;
  if (array == 4 && (c.flags & kAdamwAmsgrad) == 0) return false;
  return index >= c.padding + c.begin && index < c.padding + c.end;
}

std::string flagNames(uint32_t flags) {
  std::string s;
  if (flags & kAdamwAmsgrad) s += "amsgrad ";
  if (flags & kAdamwMaximize) s += "maximize ";
  if (flags & kAdamwCoupled) s += "coupled ";
  if (flags & kAdamwScaleGrad) s += "scaleGrad ";
  if (s.empty()) return "none";
  s.pop_back();
  return s;
}

void printFloat(const char* label, float x) {
  std::printf("    %-14s 0x%08" PRIx32 "  %.9g\n", label, bitsOf(x), static_cast<double>(x));
}

void printCase(const Case& c) {
  std::printf("  flags=%s length=%zu range=[%zu, %zu) padding=%zu splits=",
              flagNames(c.flags).c_str(), c.length, c.begin, c.end, c.padding);
  for (size_t s : c.splits) std::printf("%zu ", s);
  std::printf("\n  scalars:\n");
  printFloat("beta1", c.scalars.beta1);
  printFloat("oneMinusBeta1", c.scalars.oneMinusBeta1);
  printFloat("beta2", c.scalars.beta2);
  printFloat("oneMinusBeta2", c.scalars.oneMinusBeta2);
  printFloat("decay", c.scalars.decay);
  printFloat("l2", c.scalars.l2);
  printFloat("negStepSize", c.scalars.negStepSize);
  printFloat("epsHat", c.scalars.epsHat);
  printFloat("gradFactor", c.scalars.gradFactor);
}

struct Totals {
  uint64_t runs = 0;
  uint64_t elements = 0;  // elements updated, summed over the runs
  // Updated floats by class of the scalar kernel's result, to show that ordinary values,
  // infinities and NaNs were all exercised.
  uint64_t finiteOutputs = 0;
  uint64_t infiniteOutputs = 0;
  uint64_t nanOutputs = 0;
  uint64_t mismatches = 0;        // floats whose bits differ from the scalar kernel's
  uint64_t nanBitMismatches = 0;  // ... of which both are NaN (only sign or payload differ)
  uint64_t nonCanonicalNans = 0;  // NaNs the kernel stored with bits other than 0x7fc00000
};

constexpr uint64_t kProblemsShown = 10;

void printInputsAt(const Case& c, size_t i) {
  std::printf("  inputs at that element:\n");
  for (size_t b = 0; b < kArrays; ++b) printFloat(kArrayNames[b], c.arrays[b][i]);
  printCase(c);
}

long elementOf(const Case& c, size_t i) {
  return static_cast<long>(i) - static_cast<long>(c.padding);
}

void printMismatch(const IsaInfo& isa, const Case& c, uint64_t caseIndex, size_t array, size_t i,
                   float want, float got) {
  std::printf("MISMATCH %s vs scalar, case %" PRIu64 ": %s[%ld]: scalar 0x%08" PRIx32
              " (%.9g), %s 0x%08" PRIx32 " (%.9g)\n",
              isa.name, caseIndex, kArrayNames[array], elementOf(c, i), bitsOf(want),
              static_cast<double>(want), isa.name, bitsOf(got), static_cast<double>(got));
  printInputsAt(c, i);
}

void printNonCanonicalNan(const char* kernel, const Case& c, uint64_t caseIndex, size_t array,
                          size_t i, float stored) {
  std::printf("NON-CANONICAL NaN from %s, case %" PRIu64 ": %s[%ld] = 0x%08" PRIx32
              ", expected 0x%08" PRIx32 "\n",
              kernel, caseIndex, kArrayNames[array], elementOf(c, i), bitsOf(stored),
              kCanonicalNanBits);
  printInputsAt(c, i);
}

// Runs the scalar kernel once over [begin, end) and `isa` over the same range cut at c.splits,
// then compares every float of every array, margins included, bit for bit: NaNs too, since every
// kernel stores only the canonical NaN. Every NaN `isa` wrote must be 0x7fc00000 (the scalar
// kernel's NaNs are checked in checkScalarKernel, which runs on every machine).
void compareKernels(const IsaInfo& isa, const Case& c, uint64_t caseIndex, Totals& totals) {
  std::vector<float> expected[kArrays], actual[kArrays];
  for (size_t a = 0; a < kArrays; ++a) expected[a] = actual[a] = c.arrays[a];

  adamwScalar(tensorOf(expected, c), c.scalars, c.flags, c.begin, c.end);
  const AdamwTensor simdTensor = tensorOf(actual, c);
  size_t from = c.begin;
  for (size_t to : c.splits) {
    adamwWith(isa, simdTensor, c.scalars, c.flags, from, to);
    from = to;
  }
  adamwWith(isa, simdTensor, c.scalars, c.flags, from, c.end);

  ++totals.runs;
  totals.elements += c.end - c.begin;
  for (size_t a = 0; a < kArrays; ++a) {
    for (size_t i = 0; i < expected[a].size(); ++i) {
      const uint32_t want = bitsOf(expected[a][i]);
      const uint32_t got = bitsOf(actual[a][i]);
      const bool updated = i >= c.padding + c.begin && i < c.padding + c.end;
      if (updated) {
        const float value = expected[a][i];
        ++(std::isnan(value)   ? totals.nanOutputs
           : std::isinf(value) ? totals.infiniteOutputs
                               : totals.finiteOutputs);
      }
      if (isWritten(c, a, i) && isNanBits(got) && got != kCanonicalNanBits) {
        ++totals.nonCanonicalNans;
        if (totals.mismatches + totals.nonCanonicalNans <= kProblemsShown) {
          printNonCanonicalNan(isa.name, c, caseIndex, a, i, actual[a][i]);
        }
      }
      if (want == got) continue;
      ++totals.mismatches;
      if (isNanBits(want) && isNanBits(got)) ++totals.nanBitMismatches;
      if (totals.mismatches + totals.nonCanonicalNans <= kProblemsShown) {
        printMismatch(isa, c, caseIndex, a, i, expected[a][i], actual[a][i]);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Random cases.

using Rng = std::mt19937_64;

uint64_t uniform(Rng& rng, uint64_t lo, uint64_t hi) {  // inclusive
  return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
}

double uniformReal(Rng& rng, double lo, double hi) {
  return std::uniform_real_distribution<double>(lo, hi)(rng);
}

uint32_t randomSign(Rng& rng) { return uniform(rng, 0, 1) ? 0x80000000u : 0u; }

// A float with a moderate magnitude, like real weights, gradients and moments.
// (Each random draw is its own statement: the order in which function arguments are evaluated is
// unspecified, and compilers for different targets do pick different orders.)
float ordinaryFloat(Rng& rng) {
  const int exponent = static_cast<int>(uniform(rng, 0, 40)) - 30;
  const double magnitude = std::ldexp(uniformReal(rng, 1.0, 2.0), exponent);
  return static_cast<float>(uniform(rng, 0, 1) ? magnitude : -magnitude);
}

// Anything a Float32Array can hold, weighted towards the values where IEEE rules get interesting.
float extremeFloat(Rng& rng) {
  const uint32_t mantissa = static_cast<uint32_t>(uniform(rng, 0, 0x7fffff));
  switch (uniform(rng, 0, 9)) {
    case 0:  // +-0
      return floatOf(randomSign(rng));
    case 1:  // +-Inf
      return floatOf(randomSign(rng) | 0x7f800000u);
    case 2:  // quiet NaN, random payload and sign
      return floatOf(randomSign(rng) | 0x7fc00000u | (mantissa & 0x3fffffu));
    case 3:  // signalling NaN (quiet bit clear, payload nonzero)
      return floatOf(randomSign(rng) | 0x7f800000u | ((mantissa & 0x3fffffu) | 1u));
    case 4:  // subnormal
      return floatOf(randomSign(rng) | mantissa);
    case 5: {  // huge, near FLT_MAX, or tiny, near FLT_MIN
      const uint32_t exponent =
          uniform(rng, 0, 1) ? 254 - uniform(rng, 0, 3) : 1 + uniform(rng, 0, 3);
      return floatOf(randomSign(rng) | (exponent << 23) | mantissa);
    }
    case 6: {  // any finite exponent
      const uint32_t exponent = static_cast<uint32_t>(uniform(rng, 1, 254));
      return floatOf(randomSign(rng) | (exponent << 23) | mantissa);
    }
    case 7:  // any bit pattern
      return floatOf(static_cast<uint32_t>(uniform(rng, 0, 0xffffffffu)));
    default:
      return ordinaryFloat(rng);
  }
}

// How a case fills its arrays. Small pools make equal inputs (for nanMax's ties and +-0) likely.
enum class Fill { kOrdinary, kMixed, kExtreme, kSmallPool };

float fillValue(Rng& rng, Fill fill, const std::vector<float>& pool) {
  switch (fill) {
    case Fill::kOrdinary:
      return ordinaryFloat(rng);
    case Fill::kMixed:
      return uniform(rng, 0, 9) == 0 ? extremeFloat(rng) : ordinaryFloat(rng);
    case Fill::kExtreme:
      return extremeFloat(rng);
    case Fill::kSmallPool:
      return pool[uniform(rng, 0, pool.size() - 1)];
  }
  return 0.0f;
}

// 2^e * [1, 2) for a random e in [lowExponent, highExponent]: log-uniform, and exact (no libm), so
// that the cases are the same bits on every architecture.
double logUniform(Rng& rng, int lowExponent, int highExponent) {
  const int exponent = lowExponent + static_cast<int>(uniform(rng, 0, highExponent - lowExponent));
  return std::ldexp(uniformReal(rng, 1.0, 2.0), exponent);
}

// base^n with IEEE multiplications only (std::pow may differ in the last bit between libms).
double power(double base, uint64_t n) {
  double result = 1.0;
  for (; n != 0; n >>= 1, base *= base) {
    if (n & 1) result *= base;
  }
  return result;
}

// Scalars as lib/ computes them: in double from plausible hyperparameters, each
// rounded to float32 once. A fifth of the cases instead get arbitrary (even NaN) scalars.
AdamwScalars randomScalars(Rng& rng, uint32_t flags) {
  AdamwScalars s{};
  if (uniform(rng, 0, 4) == 0) {
    float* fields[] = {&s.beta1, &s.oneMinusBeta1, &s.beta2,  &s.oneMinusBeta2, &s.decay,
                       &s.l2,    &s.negStepSize,   &s.epsHat, &s.gradFactor};
    for (float* f : fields) *f = uniform(rng, 0, 1) ? extremeFloat(rng) : ordinaryFloat(rng);
    return s;
  }
  const double lr = logUniform(rng, -20, -1);  // ~1e-6 .. 1
  const double beta1 = uniform(rng, 0, 3) == 0 ? uniformReal(rng, 0, 1) : 0.9;
  const double beta2 = uniform(rng, 0, 3) == 0 ? uniformReal(rng, 0, 1) : 0.999;
  const double eps = logUniform(rng, -40, -14);  // ~1e-12 .. 1e-4
  const double weightDecay = uniform(rng, 0, 3) == 0 ? 0.0 : logUniform(rng, -14, -1);
  const uint64_t step = uniform(rng, 1, 10000);
  // clipCoef / gradScale: a clip coefficient in (0, 1] over a power-of-two loss scale, or not.
  const double gradFactor =
      uniform(rng, 0, 1)
          ? logUniform(rng, -10, 0) / std::ldexp(1.0, static_cast<int>(uniform(rng, 0, 24)))
          : logUniform(rng, -30, 0);
  const double biasCorrection1 = 1 - power(beta1, step);
  const double sqrtBiasCorrection2 = std::sqrt(1 - power(beta2, step));
  const bool coupled = (flags & kAdamwCoupled) != 0;
  s.beta1 = static_cast<float>(beta1);
  s.oneMinusBeta1 = static_cast<float>(1 - beta1);
  s.beta2 = static_cast<float>(beta2);
  s.oneMinusBeta2 = static_cast<float>(1 - beta2);
  s.decay = static_cast<float>(coupled ? 1 : 1 - lr * weightDecay);
  s.l2 = static_cast<float>(coupled ? weightDecay : 0);
  s.negStepSize = static_cast<float>(-(lr / biasCorrection1) * sqrtBiasCorrection2);
  s.epsHat = static_cast<float>(eps * sqrtBiasCorrection2);
  s.gradFactor = static_cast<float>(gradFactor);
  return s;
}

Case randomCase(Rng& rng, uint32_t flags) {
  Case c;
  const uint64_t lengthKind = uniform(rng, 0, 19);
  c.length = lengthKind == 0 ? uniform(rng, 101, 5000) : uniform(rng, 0, 100);
  c.padding = uniform(rng, 0, 17);
  if (uniform(rng, 0, 2) == 0) {
    c.begin = 0;
    c.end = c.length;
  } else {
    c.begin = uniform(rng, 0, c.length);
    c.end = uniform(rng, c.begin, c.length);
  }
  const uint64_t pieces = uniform(rng, 0, 3) == 0 ? uniform(rng, 1, 3) : 0;
  for (uint64_t p = 0; p < pieces; ++p) c.splits.push_back(uniform(rng, c.begin, c.end));
  std::sort(c.splits.begin(), c.splits.end());
  c.flags = flags;
  c.scalars = randomScalars(rng, flags);

  const Fill fill = static_cast<Fill>(uniform(rng, 0, 3));
  std::vector<float> pool;
  for (int k = 0; k < 4; ++k) pool.push_back(extremeFloat(rng));
  pool.push_back(0.0f);
  pool.push_back(-0.0f);
  for (size_t a = 0; a < kArrays; ++a) {
    c.arrays[a].resize(c.padding + c.length + kTrailer);
    for (float& x : c.arrays[a]) x = fillValue(rng, fill, pool);
    // Second moments are normally >= 0; keep them so in ordinary cases, where the update is real.
    if (fill != Fill::kExtreme && (a == 3 || a == 4)) {
      for (float& x : c.arrays[a]) x = floatOf(bitsOf(x) & 0x7fffffffu);
    }
  }
  return c;
}

// 64-bit FNV-1a: a fingerprint of the cases and of the scalar kernel's results, printed
// so that runs on different architectures can be compared (scripts/test-kernels-cross.sh does).
struct Digest {
  uint64_t hash = 14695981039346656037ull;
  void add(uint64_t word) {
    for (int byte = 0; byte < 8; ++byte) {
      hash = (hash ^ ((word >> (8 * byte)) & 0xff)) * 1099511628211ull;
    }
  }
};

// Runs the scalar kernel on the same cases the ISAs get, checks that every NaN it stores is
// 0x7fc00000, and prints digests of the inputs and of the results, all bits of every float
// included: each operation is a single correctly rounded IEEE operation on every architecture and
// every NaN result is stored as the canonical NaN, so the results digest must be the same on all.
// Returns whether every stored NaN was canonical.
bool checkScalarKernel(uint64_t cases, uint64_t seed) {
  Rng rng(seed);
  Digest inputs, results;
  uint64_t nanOutputs = 0, nonCanonicalNans = 0;
  for (uint64_t k = 0; k < cases; ++k) {
    for (uint32_t flags = 0; flags <= kAdamwAllFlags; ++flags) {
      if ((flags & ~kAdamwAllFlags) != 0) continue;
      Case c = randomCase(rng, flags);
      for (const std::vector<float>& array : c.arrays) {
        for (float x : array) inputs.add(bitsOf(x));
      }
      for (float x : {c.scalars.beta1, c.scalars.oneMinusBeta1, c.scalars.beta2,
                      c.scalars.oneMinusBeta2, c.scalars.decay, c.scalars.l2, c.scalars.negStepSize,
                      c.scalars.epsHat, c.scalars.gradFactor}) {
        inputs.add(bitsOf(x));
      }
      for (uint64_t word : {uint64_t{c.flags}, uint64_t{c.length}, uint64_t{c.padding},
                            uint64_t{c.begin}, uint64_t{c.end}}) {
        inputs.add(word);
      }
      const Case input = c;
      adamwScalar(tensorOf(c.arrays, c), c.scalars, c.flags, c.begin, c.end);
      for (size_t a = 0; a < kArrays; ++a) {
        for (size_t i = 0; i < c.arrays[a].size(); ++i) {
          const uint32_t bits = bitsOf(c.arrays[a][i]);
          results.add(bits);
          if (!isWritten(c, a, i) || !isNanBits(bits)) continue;
          ++nanOutputs;
          if (bits == kCanonicalNanBits) continue;
          if (++nonCanonicalNans <= kProblemsShown) {
            printNonCanonicalNan("scalar", input, k, a, i, c.arrays[a][i]);
          }
        }
      }
    }
  }
  std::printf("  scalar   digests: inputs %016" PRIx64 ", results %016" PRIx64 "\n", inputs.hash,
              results.hash);
  std::printf("  scalar   %" PRIu64 " NaN outputs, %" PRIu64 " non-canonical: %s\n", nanOutputs,
              nonCanonicalNans, nonCanonicalNans == 0 ? "ok" : "FAIL");
  return nonCanonicalNans == 0;
}

bool parseCount(const char* text, uint64_t& out) {
  char* end = nullptr;
  out = std::strtoull(text, &end, 10);
  return end != text && *end == '\0';
}

int run(int argc, char** argv) {
  uint64_t cases = 3000;
  uint64_t leanCases = 300;
  uint64_t seed = 20240601;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool hasValue = i + 1 < argc;
    if (arg == "--cases" && hasValue && parseCount(argv[i + 1], cases)) {
      ++i;
    } else if (arg == "--seed" && hasValue && parseCount(argv[i + 1], seed)) {
      ++i;
    } else if (arg == "--lean-cases" && hasValue && parseCount(argv[i + 1], leanCases)) {
      ++i;
    } else {
      std::fprintf(stderr, "usage: %s [--cases N] [--seed S] [--lean-cases N]\n", argv[0]);
      return 2;
    }
  }

  std::printf("kernel-agreement: %" PRIu64 " cases x %" PRIu32 " flag combinations, seed %" PRIu64
              "\n",
              cases, 16u, seed);
  bool allAgree = checkScalarKernel(cases, seed);
  size_t tested = 0;
  for (const IsaInfo& isa : compiledIsas()) {
    if (isScalarIsa(isa)) continue;
    if (!isa.supported()) {
      std::printf("  %-8s skipped: this CPU (or its OS) cannot run it\n", isa.name);
      continue;
    }
    ++tested;
    Rng rng(seed);  // every ISA sees the same cases
    Totals totals;
    for (uint64_t k = 0; k < cases; ++k) {
      for (uint32_t flags = 0; flags <= kAdamwAllFlags; ++flags) {
        if ((flags & ~kAdamwAllFlags) != 0) continue;
        compareKernels(isa, randomCase(rng, flags), k, totals);
      }
    }
    const bool agree = totals.mismatches == 0 && totals.nonCanonicalNans == 0;
    std::printf("  %-8s vs scalar: %" PRIu64 " runs, %" PRIu64 " elements, outputs %" PRIu64
                " finite / %" PRIu64 " inf / %" PRIu64 " NaN: %s; %" PRIu64
                " bit mismatches (%" PRIu64 " between NaNs), %" PRIu64 " non-canonical NaNs\n",
                isa.name, totals.runs, totals.elements, totals.finiteOutputs,
                totals.infiniteOutputs, totals.nanOutputs, agree ? "agree" : "DISAGREE",
                totals.mismatches, totals.nanBitMismatches, totals.nonCanonicalNans);
    allAgree = allAgree && agree;
  }
  if (tested == 0) {
    std::printf("kernel-agreement: no SIMD kernel to compare on this machine\n");
  }
  // The lean-state ops, every ISA (scalar included) against the reference in lean-ops.h.
  allAgree = lean::checkLeanOps(seed, leanCases) && allAgree;
  std::printf("kernel-agreement: %s\n", allAgree ? "PASS" : "FAIL");
  return allAgree ? 0 : 1;
}

}  // namespace
}  // namespace simd_adamw

// native/tests/fuzz-kernels.cc includes this file for its cases and checks, with its own main().
#ifndef SIMD_ADAMW_KERNEL_AGREEMENT_NO_MAIN
int main(int argc, char** argv) { return simd_adamw::run(argc, argv); }
#endif
