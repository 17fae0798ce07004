// The gradient norm's sum of squares (native/grad-norm.h): every ISA's kernel and every thread
// count give exactly the canonical order's bits, at the C++ level, without Node.
//
// The reference here is the canonical order written out literally, as grad-norm.h defines it, in
// plain scalar double arithmetic and without the kernels' code: per tensor, blocks of 4096 from
// its first element; within a block, element i into partial i % 16; the fixed tree over the
// partials; block sums in order; tensor sums in order. Each case is a list of tensors (lengths
// around the block size and the vector widths, empty ones, unaligned starts) filled with values
// of widely different magnitudes, so that another order of additions would round differently (the
// program counts how often a plain left-to-right sum differs, to show the cases can tell orders
// apart), and, in some cases, NaN (quiet and signalling, any payload and sign), +-Inf, subnormals
// and FLT_MAX. Checked, bit for bit:
//   - each kernel's block sums against the reference's, for a whole tensor in one call and from a
//     later block on (NaNs compare equal to NaNs here: a kernel may return any NaN,
//     sumOfSquares canonicalizes it), and that it writes no sum past the last block;
//   - sumOfSquares, with every ISA's kernel and 1 to 7 threads, against the reference total and
//     per-tensor sums; a NaN result must be the canonical quiet NaN;
//   - the total is finite exactly when every element is.
// The same for 16-bit gradients (bf16 and fp16 bits, grad-norm.h's widened order): each case's
// tensors again as bf16 (the top halves of its floats) and as fp16 (random patterns with the
// case's specials: subnormals, +-Inf, NaN), against the reference over their float32 widenings,
// decoded here independently (bits << 16; fp16 by its definition with ldexp), so a bf16 or fp16
// grad's norm must equal that of its float32 widening bit for bit.
// A digest of the scalar kernel's results is printed so that runs on different architectures can
// be compared (scripts/test-kernels-cross.sh does).
//
//   grad-norm-agreement [--cases N] [--seed S]
//
// Exit status: 0 when everything agrees, 1 on any disagreement (the first few are printed), 2 on
// bad arguments.
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
#include "../grad-norm.h"

namespace simd_adamw {
namespace {

// The reference ISA (always compiled, always last).
const IsaInfo& scalarIsa() { return compiledIsas().back(); }

uint32_t bitsOf(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
}

uint64_t bitsOf(double x) {
  uint64_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
}

float floatOf(uint32_t bits) {
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

// The promise under test, restated rather than included from the implementation.
constexpr uint64_t kCanonicalNanBits = 0x7ff8000000000000ull;
constexpr size_t kBlock = 4096;
constexpr size_t kPartials = 16;

// Equal bits, or both NaN.
bool sameSum(double a, double b) {
  return bitsOf(a) == bitsOf(b) || (std::isnan(a) && std::isnan(b));
}

// A finite result must match bit for bit; a NaN result of sumOfSquares must be the canonical NaN.
bool sameCanonicalSum(double got, double want) {
  if (std::isnan(want)) return bitsOf(got) == kCanonicalNanBits;
  return bitsOf(got) == bitsOf(want);
}

// A tensor's float32 gradient, as the reference reads it.
struct FloatSpan {
  const float* data;
  size_t length;
};

std::vector<GradSpan> gradSpans(const std::vector<FloatSpan>& spans) {
  std::vector<GradSpan> result;
  for (const FloatSpan& span : spans)
    result.push_back(GradSpan{span.data, span.length, kGradFloat32});
  return result;
}

// IEEE binary16 by its definition: (-1)^s 2^(e - 15) (1 + m / 1024), subnormals 2^-14 (m / 1024).
float decodeHalf(uint16_t h) {
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  const float sign = (h & 0x8000) ? -1.0f : 1.0f;
  if (exponent == 31)
    return mantissa != 0 ? std::numeric_limits<float>::quiet_NaN() : sign * INFINITY;
  if (exponent == 0) return sign * std::ldexp(static_cast<float>(mantissa), -24);
  return sign * std::ldexp(static_cast<float>(1024 + mantissa), exponent - 25);
}

// ---------------------------------------------------------------------------------------------
// The canonical order, literally.

double referenceBlock(const float* data, size_t length) {
  double partials[kPartials] = {};
  for (size_t i = 0; i < length; ++i) {
    const double x = static_cast<double>(data[i]);
    partials[i % kPartials] += x * x;
  }
  for (size_t half = kPartials / 2; half >= 1; half /= 2) {
    for (size_t j = 0; j < half; ++j) partials[j] += partials[j + half];
  }
  return partials[0];
}

double referenceSum(const std::vector<FloatSpan>& spans, std::vector<double>* perSpan) {
  perSpan->clear();
  double total = 0.0;
  for (const FloatSpan& span : spans) {
    double spanSum = 0.0;
    for (size_t offset = 0; offset < span.length; offset += kBlock) {
      const size_t length = span.length - offset < kBlock ? span.length - offset : kBlock;
      spanSum += referenceBlock(span.data + offset, length);
    }
    perSpan->push_back(spanSum);
    total += spanSum;
  }
  return total;
}

// What a different order would give: every square added left to right.
double sequentialSum(const std::vector<FloatSpan>& spans) {
  double total = 0.0;
  for (const FloatSpan& span : spans) {
    for (size_t i = 0; i < span.length; ++i) {
      const double x = static_cast<double>(span.data[i]);
      total += x * x;
    }
  }
  return total;
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

// A float of any sign with a magnitude 2^[-40, 40) times [1, 2): squares spanning 160 binary
// orders, so that the order of the additions decides how they round. (Each random draw is its own
// statement: argument evaluation order is unspecified and differs between compilers.)
float wideFloat(Rng& rng) {
  const int exponent = static_cast<int>(uniform(rng, 0, 79)) - 40;
  const double magnitude = std::ldexp(uniformReal(rng, 1.0, 2.0), exponent);
  return static_cast<float>(uniform(rng, 0, 1) ? magnitude : -magnitude);
}

float specialFloat(Rng& rng) {
  const uint32_t sign = uniform(rng, 0, 1) ? 0x80000000u : 0u;
  const uint32_t mantissa = static_cast<uint32_t>(uniform(rng, 0, 0x7fffff));
  switch (uniform(rng, 0, 6)) {
    case 0:
      return floatOf(sign);  // +-0
    case 1:
      return floatOf(sign | 0x7f800000u);  // +-Inf
    case 2:
      return floatOf(sign | 0x7fc00000u | (mantissa & 0x3fffffu));  // quiet NaN
    case 3:
      return floatOf(sign | 0x7f800000u | (mantissa & 0x3fffffu) | 1u);  // signalling NaN
    case 4:
      return floatOf(sign | mantissa);  // subnormal
    case 5:
      return floatOf(sign | 0x7f7fffffu);  // +-FLT_MAX
    default:
      return floatOf(sign | (static_cast<uint32_t>(uniform(rng, 1, 254)) << 23) | mantissa);
  }
}

size_t randomLength(Rng& rng) {
  switch (uniform(rng, 0, 5)) {
    case 0:
      return 0;
    case 1:
      return uniform(rng, 1, 40);  // shorter than a chunk of 16 or a few
    case 2:                        // around a block boundary
      return kBlock * uniform(rng, 1, 3) + uniform(rng, 0, 40) - 20;
    case 3:
      return uniform(rng, 41, 3 * kBlock);
    default:
      return uniform(rng, 1, 600);
  }
}

struct Case {
  std::vector<float> storage;  // every tensor, each after a random gap (alignment)
  std::vector<size_t> starts;
  std::vector<size_t> lengths;
  bool hasSpecials = false;

  std::vector<FloatSpan> spans() const {
    std::vector<FloatSpan> result;
    for (size_t k = 0; k < starts.size(); ++k) {
      result.push_back(FloatSpan{storage.data() + starts[k], lengths[k]});
    }
    return result;
  }
};

Case randomCase(Rng& rng) {
  Case c;
  const bool large = uniform(rng, 0, 9) == 0;  // big enough for several threads
  const size_t tensors = uniform(rng, 1, large ? 4 : 6);
  for (size_t k = 0; k < tensors; ++k) {
    const size_t gap = uniform(rng, 0, 15);
    c.starts.push_back(c.storage.size() + gap);
    const size_t length = large ? uniform(rng, 20000, 90000) : randomLength(rng);
    c.lengths.push_back(length);
    c.storage.resize(c.storage.size() + gap + length);
  }
  c.hasSpecials = uniform(rng, 0, 3) == 0;
  const uint64_t specialRate = uniform(rng, 1, 2000);  // one in this many
  for (float& x : c.storage) {
    x = c.hasSpecials && uniform(rng, 1, specialRate) == 1 ? specialFloat(rng) : wideFloat(rng);
  }
  return c;
}

// 64-bit FNV-1a over the words given.
struct Digest {
  uint64_t hash = 14695981039346656037ull;
  void add(uint64_t word) {
    for (int byte = 0; byte < 8; ++byte) {
      hash = (hash ^ ((word >> (8 * byte)) & 0xff)) * 1099511628211ull;
    }
  }
};

constexpr uint64_t kProblemsShown = 10;

struct Totals {
  uint64_t checks = 0;
  uint64_t problems = 0;
  void fail(const char* what, const char* isa, uint64_t caseIndex, double got, double want) {
    ++problems;
    if (problems > kProblemsShown) return;
    std::printf("MISMATCH %s (%s), case %" PRIu64 ": got 0x%016" PRIx64
                " (%.17g), want 0x%016" PRIx64 " (%.17g)\n",
                what, isa, caseIndex, bitsOf(got), got, bitsOf(want), want);
  }
};

const unsigned kThreadCounts[] = {1, 2, 3, 4, 7};

void checkCase(const Case& c, uint64_t caseIndex, Totals& totals, Digest& inputs, Digest& results,
               uint64_t& orderSensitive, uint64_t& nonFinite) {
  const std::vector<FloatSpan> spans = c.spans();
  std::vector<double> wantPerSpan;
  const double want = referenceSum(spans, &wantPerSpan);
  if (!sameSum(sequentialSum(spans), want)) ++orderSensitive;

  bool allFinite = true;
  for (const FloatSpan& span : spans) {
    inputs.add(span.length);
    for (size_t i = 0; i < span.length; ++i) {
      inputs.add(bitsOf(span.data[i]));
      allFinite = allFinite && std::isfinite(span.data[i]);
    }
  }
  ++totals.checks;
  if (std::isfinite(want) != allFinite)
    totals.fail("finite iff inputs finite", "reference", caseIndex, want, want);
  if (!std::isfinite(want)) ++nonFinite;

  for (const IsaInfo& isa : compiledIsas()) {
    if (!isa.supported()) continue;
    // The kernel alone: every block of each tensor in one call, and the blocks from a later one
    // on (as a thread's share does). A sentinel after the last sum catches a write past it.
    for (const FloatSpan& span : spans) {
      const size_t blocks = (span.length + kBlock - 1) / kBlock;
      const size_t first = blocks > 1 ? (span.length + caseIndex) % blocks : 0;
      for (const size_t from : {size_t{0}, first}) {
        std::vector<double> sums(blocks - from + 1, -1.0);
        isa.kernels->sumSquares[kGradFloat32](span.data + from * kBlock,
                                              span.length - from * kBlock, sums.data());
        for (size_t b = from; b < blocks; ++b) {
          const size_t length = std::min(span.length - b * kBlock, kBlock);
          const double expected = referenceBlock(span.data + b * kBlock, length);
          ++totals.checks;
          if (!sameSum(sums[b - from], expected)) {
            totals.fail("block sum", isa.name, caseIndex, sums[b - from], expected);
          }
        }
        ++totals.checks;
        if (bitsOf(sums.back()) != bitsOf(-1.0)) {
          totals.fail("write past the last block", isa.name, caseIndex, sums.back(), -1.0);
        }
      }
    }
    // The whole reduction, on every thread count.
    for (unsigned threads : kThreadCounts) {
      std::vector<double> perSpan;
      const double got = sumOfSquares(gradSpans(spans), isa.kernels->sumSquares, threads, &perSpan);
      ++totals.checks;
      if (!sameCanonicalSum(got, want)) totals.fail("total", isa.name, caseIndex, got, want);
      for (size_t k = 0; k < spans.size(); ++k) {
        ++totals.checks;
        if (!sameSum(perSpan[k], wantPerSpan[k])) {
          totals.fail("tensor sum", isa.name, caseIndex, perSpan[k], wantPerSpan[k]);
        }
      }
      if (isa.kernels == scalarIsa().kernels && threads == 1) results.add(bitsOf(got));
    }
  }
}

// The case's tensors as 16-bit gradients of `dtype`: every ISA's kernel and sumOfSquares against
// the reference over the independently widened floats.
void checkHalfCase(const Case& c, GradDtype dtype, uint64_t caseIndex, Totals& totals,
                   Digest& results) {
  std::vector<uint16_t> halves(c.storage.size());
  Rng rng(caseIndex * 2 + dtype);
  for (size_t i = 0; i < halves.size(); ++i) {
    if (dtype == kGradBfloat16) {
      halves[i] = static_cast<uint16_t>(bitsOf(c.storage[i]) >> 16);
    } else if (c.hasSpecials && uniform(rng, 0, 200) == 0) {
      const uint16_t specials[] = {0x7c00, 0xfc00, 0x7e00, 0x7d01, 0xfe55, 0x0001, 0x83ff, 0x7bff};
      halves[i] = specials[uniform(rng, 0, 7)];
    } else {
      // Finite: exponent 0 (subnormal) .. 30, any mantissa and sign.
      halves[i] = static_cast<uint16_t>((uniform(rng, 0, 1) << 15) | (uniform(rng, 0, 30) << 10) |
                                        uniform(rng, 0, 1023));
    }
  }
  std::vector<float> widened(halves.size());
  for (size_t i = 0; i < halves.size(); ++i) {
    widened[i] = dtype == kGradBfloat16 ? floatOf(static_cast<uint32_t>(halves[i]) << 16)
                                        : decodeHalf(halves[i]);
  }
  std::vector<FloatSpan> reference;
  std::vector<GradSpan> grads;
  for (size_t k = 0; k < c.starts.size(); ++k) {
    reference.push_back(FloatSpan{widened.data() + c.starts[k], c.lengths[k]});
    grads.push_back(GradSpan{halves.data() + c.starts[k], c.lengths[k], dtype});
  }
  std::vector<double> wantPerSpan;
  const double want = referenceSum(reference, &wantPerSpan);
  const char* name = dtype == kGradBfloat16 ? "bf16" : "fp16";
  for (const IsaInfo& isa : compiledIsas()) {
    if (!isa.supported()) continue;
    for (size_t k = 0; k < grads.size(); ++k) {
      const size_t blocks = (grads[k].length + kBlock - 1) / kBlock;
      std::vector<double> sums(blocks + 1, -1.0);
      isa.kernels->sumSquares[dtype](grads[k].data, grads[k].length, sums.data());
      for (size_t b = 0; b < blocks; ++b) {
        const size_t length = std::min(grads[k].length - b * kBlock, kBlock);
        ++totals.checks;
        const double expected = referenceBlock(reference[k].data + b * kBlock, length);
        if (!sameSum(sums[b], expected)) totals.fail(name, isa.name, caseIndex, sums[b], expected);
      }
      ++totals.checks;
      if (bitsOf(sums.back()) != bitsOf(-1.0)) {
        totals.fail("write past the last block", isa.name, caseIndex, sums.back(), -1.0);
      }
    }
    for (unsigned threads : kThreadCounts) {
      std::vector<double> perSpan;
      const double got = sumOfSquares(grads, isa.kernels->sumSquares, threads, &perSpan);
      ++totals.checks;
      if (!sameCanonicalSum(got, want)) totals.fail(name, isa.name, caseIndex, got, want);
      for (size_t k = 0; k < grads.size(); ++k) {
        ++totals.checks;
        if (!sameSum(perSpan[k], wantPerSpan[k])) {
          totals.fail(name, isa.name, caseIndex, perSpan[k], wantPerSpan[k]);
        }
      }
      if (isa.kernels == scalarIsa().kernels && threads == 1) results.add(bitsOf(got));
    }
  }
}

bool parseCount(const char* text, uint64_t& out) {
  char* end = nullptr;
  out = std::strtoull(text, &end, 10);
  return end != text && *end == '\0';
}

int run(int argc, char** argv) {
  uint64_t cases = 1500;
  uint64_t seed = 20240601;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool hasValue = i + 1 < argc;
    if (arg == "--cases" && hasValue && parseCount(argv[i + 1], cases)) {
      ++i;
    } else if (arg == "--seed" && hasValue && parseCount(argv[i + 1], seed)) {
      ++i;
    } else {
      std::fprintf(stderr, "usage: %s [--cases N] [--seed S]\n", argv[0]);
      return 2;
    }
  }

  std::printf("grad-norm-agreement: %" PRIu64 " cases, seed %" PRIu64 ", ISAs:", cases, seed);
  for (const IsaInfo& isa : compiledIsas()) {
    std::printf(" %s%s", isa.name, isa.supported() ? "" : " (skipped: not runnable here)");
  }
  std::printf("\n");
  Rng rng(seed);
  Totals totals;
  Digest inputs, results;
  uint64_t orderSensitive = 0, nonFinite = 0;
  for (uint64_t k = 0; k < cases; ++k) {
    const Case c = randomCase(rng);
    checkCase(c, k, totals, inputs, results, orderSensitive, nonFinite);
    checkHalfCase(c, kGradBfloat16, k, totals, results);
    checkHalfCase(c, kGradFloat16, k, totals, results);
  }
  std::printf("  norm     digests: inputs %016" PRIx64 ", results %016" PRIx64 "\n", inputs.hash,
              results.hash);
  std::printf("  %" PRIu64 " checks; %" PRIu64 " cases non-finite; %" PRIu64
              " cases where a left-to-right sum rounds differently from the canonical order\n",
              totals.checks, nonFinite, orderSensitive);
  // Cases that cannot tell orders apart would make the agreement above meaningless.
  const bool discriminating = orderSensitive * 2 > cases - nonFinite;
  if (!discriminating) std::printf("FAIL: too few order-sensitive cases\n");
  const bool pass = totals.problems == 0 && discriminating;
  std::printf("grad-norm-agreement: %s (%" PRIu64 " mismatches)\n", pass ? "PASS" : "FAIL",
              totals.problems);
  return pass ? 0 : 1;
}

}  // namespace
}  // namespace simd_adamw

int main(int argc, char** argv) { return simd_adamw::run(argc, argv); }
