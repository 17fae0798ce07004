// The blockwise8 quantizer (native/ops/blockwise8-codes.h) against references that share none of
// its shortcuts, for both bitsandbytes dynamic maps:
//   - the tables: bnb's shape (signed: 127 negative codes, 0, 128 positive ones ending at 1 and no
//     -1; unsigned: 0 to 1), strictly ascending, every midpoint exact in double, every rounded
//     midpoint the largest float at or below it, at most one midpoint per search bucket;
//   - the search: every float32 y in [-1, 1] (both signs, all 2 * 0x3f800001 patterns per map)
//     against the exact count of double midpoints below y; a sample of them (every pattern
//     stepped by a prime, +-64 patterns around every midpoint, code and bucket edge, and every
//     midpoint that is a float, a tie) against a brute-force nearest scan that compares the exact
//     distances |y - code|, ties to the lower index;
//   - blocks: absmax and codes of every length 0..256 (codes past n untouched), all-zero blocks,
//     values that are code * absmax exactly, the signed map's -absmax (no -1 code), and the
//     round-trip error bound of the issue for every element;
//   - on x86-64, the same header compiled for AVX2 and AVX-512 (target attributes; the build's ISA
//     flags are per file), the intrinsics searches (AVX2 gather; AVX-512 gather, register binary
//     search and both mixed) and the AVX-512 permute dequantize, give the baseline build's codes
//     and values (every check above runs on every variant the CPU has; the sweep on the fastest, or
//     with
//     --sweep-every-variant on each).
//
//   blockwise8-codes-test [--sample-only] [--sweep-every-variant] [--bench]
// exits with status 0 when every check passes. --sample-only skips the exhaustive sweep (2-3 s
// instead of about 6 s of CPU on AVX-512; use it under qemu); --sweep-every-variant runs the sweep
// on every variant the CPU has, not only the fastest (about a minute); --bench also prints ns per
// element of quantizeBlock and dequantizeBlock for each variant, streaming over 1M elements and in
// L1.
#include "../ops/blockwise8-codes.h"

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace simd_adamw {
namespace {

int gFailures = 0;

bool expect(bool ok, const std::string& what) {
  if (!ok) {
    if (++gFailures <= 30) std::printf("  FAIL: %s\n", what.c_str());
  }
  return ok;
}

// "ok", or "FAILED" when a check failed since `before` (the failure count then).
const char* verdict(int before) { return gFailures == before ? "ok" : "FAILED"; }

using blockwise8_detail::bitsOf;
using blockwise8_detail::floatOf;

std::string hex(float x) {
  char text[64];
  std::snprintf(text, sizeof text, "%a (0x%08x)", static_cast<double>(x), bitsOf(x));
  return text;
}

// The lowest and highest float (|y| <= 1) of search bucket j.
void bucketRange(int32_t j, float* lowest, float* highest) {
  const blockwise8_detail::BucketRange range = blockwise8_detail::bucketRange(j);
  *lowest = floatOf(range.lowest);
  *highest = floatOf(range.highest);
}

struct NamedMap {
  const char* name;
  const float* values;
  const DynamicMap& map;
  bool isSigned;
};

// ---- references -------------------------------------------------------------------------------

// a - b as an exact unevaluated sum hi + lo (Knuth's TwoSum; exact for any finite doubles).
struct Exact {
  double hi, lo;
};
Exact exactDifference(double a, double b) {
  const double hi = a - b;
  const double bb = a - hi;
  const double lo = (a - (hi + bb)) + (bb - b);
  return {hi, lo};
}
Exact absolute(Exact x) { return x.hi < 0 || (x.hi == 0 && x.lo < 0) ? Exact{-x.hi, -x.lo} : x; }
// Orders two TwoSum results exactly: hi is the correctly rounded value, and rounding is monotone.
bool less(Exact a, Exact b) { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo); }

// The nearest code by brute force: the exact distance to each of the 256 values, the first (lowest
// index) of the smallest.
int bruteNearest(const float* values, float y) {
  int best = 0;
  Exact bestDistance = absolute(exactDifference(y, values[0]));
  for (int k = 1; k < 256; ++k) {
    const Exact distance = absolute(exactDifference(y, values[k]));
    if (less(distance, bestDistance)) {
      best = k;
      bestDistance = distance;
    }
  }
  return best;
}

// The exact double midpoints (each checked exact in checkTables).
std::vector<double> midpoints(const float* values) {
  std::vector<double> m(255);
  for (int k = 0; k < 255; ++k) m[k] = (static_cast<double>(values[k]) + values[k + 1]) / 2;
  return m;
}

// ---- the compiled variants --------------------------------------------------------------------

using CodesFn = void (*)(const DynamicMap&, const float*, size_t, uint8_t*);
using QuantizeFn = float (*)(const DynamicMap&, const float*, size_t, uint8_t*);
using DequantizeFn = void (*)(const DynamicMap&, const uint8_t*, float, size_t, float*);

// The codes of y values (absmax 1: y / 1 is y), through quantizeBlock's loop.
void codesBaseline(const DynamicMap& map, const float* y, size_t n, uint8_t* codes) {
  blockwise8_detail::nearestCodes(map.buckets, y, 1.0f, n, codes);
}
float quantizeBaseline(const DynamicMap& map, const float* v, size_t n, uint8_t* codes) {
  return quantizeBlock(map, v, n, codes);
}
void dequantizeBaseline(const DynamicMap& map, const uint8_t* c, float a, size_t n, float* out) {
  dequantizeBlock(map, c, a, n, out);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define SIMD_ADAMW_VARIANT(isa, name)                                                            \
  __attribute__((target(isa), flatten)) void codes_##name(const DynamicMap& map, const float* y, \
                                                          size_t n, uint8_t* codes) {            \
    blockwise8_detail::nearestCodes(map.buckets, y, 1.0f, n, codes);                             \
  }                                                                                              \
  __attribute__((target(isa), flatten)) float quantize_##name(                                   \
      const DynamicMap& map, const float* v, size_t n, uint8_t* codes) {                         \
    return quantizeBlock(map, v, n, codes);                                                      \
  }                                                                                              \
  __attribute__((target(isa), flatten)) void dequantize_##name(                                  \
      const DynamicMap& map, const uint8_t* c, float a, size_t n, float* out) {                  \
    dequantizeBlock(map, c, a, n, out);                                                          \
  }
SIMD_ADAMW_VARIANT("avx2", avx2)
SIMD_ADAMW_VARIANT("avx512f", avx512f)
#undef SIMD_ADAMW_VARIANT

// The permute dequantizing that dequantizeBlock uses where built for AVX-512.
__attribute__((target("avx512f"), flatten)) void dequantizePermute(const DynamicMap& map,
                                                                   const uint8_t* c, float a,
                                                                   size_t n, float* out) {
  blockwise8_detail::codeValuesAvx512(map.values, c, a, n, out);
}

// The intrinsics searches that quantizeBlock uses where built for AVX2 or AVX-512.
__attribute__((target("avx2"), flatten)) void codesGatherAvx2(const DynamicMap& map, const float* y,
                                                              size_t n, uint8_t* codes) {
  blockwise8_detail::nearestCodesAvx2(map.buckets, y, 1.0f, n, codes);
}
__attribute__((target("avx2"), flatten)) float quantizeGatherAvx2(const DynamicMap& map,
                                                                  const float* v, size_t n,
                                                                  uint8_t* codes) {
  return blockwise8_detail::quantizeBlockWith<blockwise8_detail::nearestCodesAvx2>(map, v, n,
                                                                                   codes);
}
template <int kMode>
__attribute__((target("avx512f"), flatten)) void codesAvx512(const DynamicMap& map, const float* y,
                                                             size_t n, uint8_t* codes) {
  blockwise8_detail::nearestCodesAvx512With<kMode>(map, y, 1.0f, n, codes);
}
template <int kMode>
__attribute__((target("avx512f"), flatten)) float quantizeAvx512(const DynamicMap& map,
                                                                 const float* v, size_t n,
                                                                 uint8_t* codes) {
  return blockwise8_detail::quantizeBlockAvx512<kMode>(map, v, n, codes);
}
#endif

struct Variant {
  const char* name;
  bool available;
  CodesFn codes;
  QuantizeFn quantize;
  DequantizeFn dequantize;
};

std::vector<Variant> variants() {
  // Slowest first: the header compiled with no ISA flags (the scalar, SSE2 and NEON builds), for
  // AVX2, and for AVX-512 with the portable or (as the AVX-512 kernels do) the permute dequantize.
  std::vector<Variant> list = {
      {"baseline", true, codesBaseline, quantizeBaseline, dequantizeBaseline}};
#if defined(__x86_64__) && defined(__GNUC__)
  const bool avx512 = __builtin_cpu_supports("avx512f") != 0;
  list.push_back(
      {"avx2", __builtin_cpu_supports("avx2") != 0, codes_avx2, quantize_avx2, dequantize_avx2});
  list.push_back({"avx512f", avx512, codes_avx512f, quantize_avx512f, dequantize_avx512f});
  list.push_back({"avx2-gather", __builtin_cpu_supports("avx2") != 0, codesGatherAvx2,
                  quantizeGatherAvx2, dequantize_avx2});
  list.push_back({"avx512f-permute", avx512, codes_avx512f, quantize_avx512f, dequantizePermute});
  list.push_back({"avx512f-gather", avx512, codesAvx512<0>, quantizeAvx512<0>, dequantizePermute});
  list.push_back({"avx512f-search", avx512, codesAvx512<1>, quantizeAvx512<1>, dequantizePermute});
  list.push_back({"avx512f-mixed", avx512, codesAvx512<2>, quantizeAvx512<2>, dequantizePermute});
#endif
  return list;
}

// ---- checks -----------------------------------------------------------------------------------

void checkTables(const NamedMap& m) {
  const int before = gFailures;
  const float* v = m.values;
  for (int k = 0; k + 1 < 256; ++k) {
    expect(v[k] < v[k + 1], std::string(m.name) + ": ascending at " + std::to_string(k));
  }
  expect(v[255] == 1.0f, std::string(m.name) + ": the last code is 1");
  if (m.isSigned) {
    // bnb's signed map: 127 negative codes from -0.99297 (no -1), 0 at index 127, 128 positive.
    expect(v[127] == 0.0f && v[126] < 0 && v[128] > 0, "signed: 0 is code 127");
    expect(v[0] > -1.0f && v[0] == -v[254], "signed: the lowest code is -map[254], not -1");
    for (int k = 0; k < 127; ++k) {
      expect(v[k] == -v[254 - k], "signed: negative codes mirror 128..254 at " + std::to_string(k));
    }
  } else {
    expect(v[0] == 0.0f && v[1] > 0, "unsigned: 0 is code 0");
  }
  expect(m.map.values == v, std::string(m.name) + ": the map's values are the table");
  expect(m.values[m.map.zeroCode] == 0.0f, std::string(m.name) + ": zeroCode is the code of 0");

  const std::vector<double> mid = midpoints(v);
  int ties = 0;
  for (int k = 0; k < 255; ++k) {
    const std::string at = std::string(m.name) + " midpoint " + std::to_string(k);
    // Exact: the double sum loses nothing (TwoSum error 0) and the halving is exact.
    const Exact sum = exactDifference(v[k], -static_cast<double>(v[k + 1]));
    expect(sum.lo == 0 && sum.hi / 2 == mid[k], at + ": exact in double");
    const float below = m.map.midpointBelow[k];
    if (static_cast<double>(below) == mid[k]) {
      // A float exactly halfway between two codes: the tie goes to the lower index.
      ++ties;
      expect(nearestCode(m.map, below) == k && bruteNearest(v, below) == k, at + ": tie");
    }
    expect(static_cast<double>(below) <= mid[k] &&
               static_cast<double>(std::nextafter(below, INFINITY)) > mid[k],
           at + ": midpointBelow is the largest float <= the midpoint, " + hex(below));
  }

  // Every bucket: its code is the count of midpoints below its lowest float, and the next midpoint
  // after that one is not below its highest float (so one compare decides).
  double closest = INFINITY;
  for (int k = 0; k + 1 < 255; ++k) {
    const double gap = static_cast<double>(bitsOf(std::fabs(m.map.midpointBelow[k + 1]))) -
                       static_cast<double>(bitsOf(std::fabs(m.map.midpointBelow[k])));
    if ((m.map.midpointBelow[k] > 0) == (m.map.midpointBelow[k + 1] > 0)) {
      closest = std::fmin(closest, std::fabs(gap));
    }
  }
  for (int32_t j = 0; j < DynamicMap::kBuckets; ++j) {
    float lowest, highest;
    bucketRange(j, &lowest, &highest);
    int below = 0, inside = 0, first = -1;
    for (int k = 0; k < 255; ++k) {
      below += mid[k] < lowest ? 1 : 0;
      if (lowest <= mid[k] && mid[k] < highest) {
        ++inside;
        if (first < 0) first = k;
      }
    }
    const uint32_t entry = m.map.buckets[j];
    const std::string at = std::string(m.name) + " bucket " + std::to_string(j) + " [" +
                           hex(lowest) + ", " + hex(highest) + "]";
    expect(static_cast<int>(entry >> 16) == below,
           at + ": code " + std::to_string(entry >> 16) + " != " + std::to_string(below));
    expect(inside <= 1, at + ": holds two midpoints");
    // The key: the position of the one midpoint's rounded float in the bucket, or 0xffff. (The
    // rounded float of a midpoint in [lowest, highest) is in [lowest, highest] too.)
    const uint32_t key =
        inside ? blockwise8_detail::keyInBucket(bitsOf(m.map.midpointBelow[first])) : 0xffffu;
    expect((entry & 0xffffu) == 0xffffu - key, at + ": key");
    if (j > 0) {
      float previousLowest, previousHighest;
      bucketRange(j - 1, &previousLowest, &previousHighest);
      expect(std::nextafter(previousHighest, INFINITY) == lowest ||
                 (bitsOf(previousHighest) == 0x80000000u && bitsOf(lowest) == 0),
             at + ": buckets tile [-1, 1]");
    }
  }
  expect(ties > 0, std::string(m.name) + ": some midpoints are floats (ties to check)");
  std::printf(
      "  %-8s tables %s; %d midpoints are floats (ties); closest midpoints %.0f float "
      "patterns apart (buckets: %u)\n",
      m.name, verdict(before), ties, closest, 1u << 16);
}

// Checks the search at the given y values against the brute-force scan.
size_t checkAgainstBrute(const NamedMap& m, const std::vector<float>& ys) {
  std::vector<uint8_t> codes(ys.size());
  codesBaseline(m.map, ys.data(), ys.size(), codes.data());
  for (size_t i = 0; i < ys.size(); ++i) {
    const int expected = bruteNearest(m.values, ys[i]);
    if (!expect(codes[i] == expected, std::string(m.name) + ": y = " + hex(ys[i]) + " gives code " +
                                          std::to_string(codes[i]) + ", nearest is " +
                                          std::to_string(expected))) {
      break;
    }
  }
  return ys.size();
}

void checkSample(const NamedMap& m) {
  const int before = gFailures;
  std::vector<float> ys;
  auto around = [&](float center) {
    const uint32_t c = bitsOf(center);
    for (int d = -64; d <= 64; ++d) {
      const uint32_t bits = c + static_cast<uint32_t>(d);
      // Stay within the sign of center (0 +- d patterns is +-tiny values, both signs).
      const float y = floatOf(bits);
      if ((bits >> 31) == (c >> 31) && std::fabs(y) <= 1.0f) ys.push_back(y);
      if ((c & 0x7fffffffu) == 0 && d >= 0) ys.push_back(floatOf(bits ^ 0x80000000u));
    }
  };
  for (int k = 0; k < 255; ++k) around(m.map.midpointBelow[k]);
  for (int k = 0; k < 256; ++k) {
    around(m.values[k]);
    around(-m.values[k]);
  }
  for (int32_t j = 0; j < DynamicMap::kBuckets; ++j) {
    float lowest, highest;
    bucketRange(j, &lowest, &highest);
    around(lowest);
    around(highest);
  }
  around(1.0f);
  around(-1.0f);
  size_t checked = checkAgainstBrute(m, ys);
  // Every 4093rd pattern of both signs with |y| <= 1 (a prime step, so every low-bit residue).
  ys.clear();
  for (uint64_t bits = 0; bits <= 0x3f800000u; bits += 4093) {
    ys.push_back(floatOf(static_cast<uint32_t>(bits)));
    ys.push_back(-floatOf(static_cast<uint32_t>(bits)));
  }
  checked += checkAgainstBrute(m, ys);
  std::printf("  %-8s brute-force nearest scan on %zu values: %s\n", m.name, checked,
              verdict(before));
}

// Every float in [-1, 1] against the exact definition: the code of y is the number of midpoints
// (exact doubles) below it, which the brute-force scan confirms on the sample. Patterns of one
// sign are monotone in |y|, so the floats with one count form runs: each run's end is found by
// bisection with exact double compares, and the search must give the run's count on all of it.
// The search runs as the given variant (the fastest this CPU has: the sweep checks the algorithm,
// checkVariantsAgree that every variant computes it alike).
void checkExhaustive(const NamedMap& m, const Variant& variant) {
  const int before = gFailures;
  const std::vector<double> mid = midpoints(m.values);
  constexpr uint32_t kLast = 0x3f800000u;  // the magnitude pattern of 1
  constexpr size_t kBatch = 1 << 14;
  std::vector<float> ys(kBatch);
  std::vector<uint8_t> codes(kBatch);
  size_t checked = 0;
  for (const uint32_t sign : {0u, 0x80000000u}) {
    for (uint32_t first = 0;;) {
      int count = 0;
      while (count < 255 && mid[count] < floatOf(sign | first)) ++count;
      const auto sameCount = [&](uint32_t magnitude) {
        const double y = floatOf(sign | magnitude);
        return sign ? count == 0 || mid[count - 1] < y : count == 255 || y <= mid[count];
      };
      uint32_t last = first, beyond = kLast + 1;  // sameCount(last), !sameCount(beyond)
      if (sameCount(kLast)) last = kLast;
      while (beyond - last > 1 && last != kLast) {
        const uint32_t middle = last + (beyond - last) / 2;
        (sameCount(middle) ? last : beyond) = middle;
      }
      for (uint64_t start = first; start <= last; start += kBatch) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(kBatch, last + 1 - start));
        for (size_t i = 0; i < n; ++i) ys[i] = floatOf(sign | static_cast<uint32_t>(start + i));
        variant.codes(m.map, ys.data(), n, codes.data());
        uint32_t differ = 0;
        for (size_t i = 0; i < n; ++i) differ |= codes[i] ^ static_cast<uint32_t>(count);
        if (differ == 0) continue;
        size_t i = 0;
        while (codes[i] == count) ++i;
        ++gFailures;  // reported even past expect's cap: the sweep stops here
        std::printf("  FAIL: %s: y = %s gives code %d, exact is %d; sweep stopped\n", m.name,
                    hex(ys[i]).c_str(), codes[i], count);
        return;
      }
      checked += last - first + 1;
      if (last == kLast) break;
      first = last + 1;
    }
  }
  std::printf("  %-8s every float in [-1, 1] (%zu values, %s) against the exact count: %s\n",
              m.name, checked, variant.name, verdict(before));
}

// The bound of the issue for code k: half the larger gap to a neighbour, or at an end of the map
// the distance to the end of [-1, 1] (signed) or [0, 1] (unsigned) that y can reach.
double errorBound(const NamedMap& m, int k) {
  const float* v = m.values;
  const double low = k > 0 ? (static_cast<double>(v[k]) - v[k - 1]) / 2
                           : (m.isSigned ? static_cast<double>(v[0]) + 1.0 : 0.0);
  const double high = k < 255 ? (static_cast<double>(v[k + 1]) - v[k]) / 2 : 0.0;
  return std::fmax(low, high);
}

double ulp(float x) {
  const float a = std::fabs(x);
  return static_cast<double>(std::nextafter(a, INFINITY)) - a;
}

// One block through every variant: absmax is max |x|, codes the brute-force nearest of x / absmax,
// codes past n untouched, every variant the same bits, dequantized values code * absmax within the
// issue's bound.
void checkBlock(const NamedMap& m, const std::vector<float>& x, const std::string& what) {
  const size_t n = x.size();
  float absmax = 0;
  for (float value : x) absmax = std::fmax(absmax, std::fabs(value));
  std::vector<uint8_t> expected(n);
  for (size_t j = 0; j < n; ++j) {
    expected[j] =
        absmax > 0 ? static_cast<uint8_t>(bruteNearest(m.values, x[j] / absmax)) : m.map.zeroCode;
  }
  const std::string at = std::string(m.name) + " " + what + " n=" + std::to_string(n);
  for (const Variant& variant : variants()) {
    if (!variant.available) continue;
    const std::string in = at + " (" + variant.name + ")";
    std::vector<uint8_t> codes(n + 16, 0xa5);
    const float got = variant.quantize(m.map, x.data(), n, codes.data());
    if (!expect(bitsOf(got) == bitsOf(absmax), in + ": absmax " + hex(got) + " != " + hex(absmax)))
      return;
    for (size_t j = 0; j < n; ++j) {
      if (!expect(codes[j] == expected[j],
                  in + ": element " + std::to_string(j) + " x = " + hex(x[j]) + " code " +
                      std::to_string(codes[j]) + " != " + std::to_string(expected[j])))
        return;
    }
    for (size_t j = n; j < n + 16; ++j) expect(codes[j] == 0xa5, in + ": wrote past n");
    std::vector<float> out(n + 16, 7.0f);
    variant.dequantize(m.map, codes.data(), absmax, n, out.data());
    for (size_t j = n; j < n + 16; ++j) expect(out[j] == 7.0f, in + ": dequantize wrote past n");
    for (size_t j = 0; j < n; ++j) {
      const int k = codes[j];
      expect(bitsOf(out[j]) == bitsOf(m.values[k] * absmax), in + ": dequantize is code * absmax");
      // |x - out| is exact in double. The codes are nearest to y = x / absmax rounded to float,
      // and the product out is rounded: half an ulp of each on top of the bound times absmax.
      const double error = std::fabs(static_cast<double>(x[j]) - out[j]);
      const double division = absmax > 0 ? ulp(x[j] / absmax) / 2 * absmax : 0.0;
      const double bound = errorBound(m, k) * absmax * (1 + 1e-15) + ulp(out[j]) / 2 + division;
      if (!expect(error <= bound, in + ": element " + std::to_string(j) + " error " +
                                      std::to_string(error) + " > " + std::to_string(bound)))
        return;
    }
  }
}

void checkBlocks(const NamedMap& m, std::mt19937& rng) {
  const int before = gFailures;
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-30, 30);
  int blocks = 0;
  // Tails: every length 0..256 with values of mixed magnitudes (moments span decades).
  for (size_t n = 0; n <= kBlockwise8Block; ++n) {
    const float scale = std::ldexp(1.0f, exponent(rng));
    std::vector<float> x(n);
    for (float& value : x) {
      const float magnitude = std::ldexp(unit(rng), -static_cast<int>(rng() % 24)) * scale;
      value = m.isSigned ? magnitude : std::fabs(magnitude);
    }
    checkBlock(m, x, "random");
    ++blocks;
  }
  // All-zero blocks (-0 included for the signed map): absmax +0, every code the map's 0.
  for (size_t n : {size_t{1}, size_t{7}, size_t{256}}) {
    std::vector<float> x(n, 0.0f);
    if (m.isSigned) x[n / 2] = -0.0f;
    checkBlock(m, x, "zeros");
    std::vector<uint8_t> codes(n, 0);
    expect(bitsOf(quantizeBlock(m.map, x.data(), n, codes.data())) == 0, "zero block: absmax +0");
    for (uint8_t code : codes) {
      expect(code == (m.isSigned ? 127 : 0), std::string(m.name) + ": zero block codes");
    }
    ++blocks;
  }
  // Values that are exactly code * absmax (absmax a power of two, so the products are exact):
  // each gives its code back, and survives the round trip unchanged.
  for (int e : {-40, -3, 0, 5, 60}) {
    const float absmax = std::ldexp(1.0f, e);
    std::vector<float> x(256);
    for (int k = 0; k < 256; ++k) x[k] = m.values[k] * absmax;
    std::vector<uint8_t> codes(256);
    expect(quantizeBlock(m.map, x.data(), 256, codes.data()) == absmax, "exact values: absmax");
    std::vector<float> out(256);
    dequantizeBlock(m.map, codes.data(), absmax, 256, out.data());
    for (int k = 0; k < 256; ++k) {
      expect(codes[k] == k && out[k] == x[k],
             std::string(m.name) + ": code*absmax gives code " + std::to_string(k) + " back");
    }
    checkBlock(m, x, "code*absmax");
    ++blocks;
  }
  if (m.isSigned) {
    // -absmax: y = -1, which no code equals; the nearest is code 0 (-0.99297), at a distance of
    // 0.0070 * absmax, the end-of-map case of the bound.
    std::vector<float> x = {-3.0f, 1.5f, 0.0f, 3.0f, -1.0f};
    std::vector<uint8_t> codes(x.size());
    quantizeBlock(m.map, x.data(), x.size(), codes.data());
    expect(codes[0] == 0 && codes[3] == 255 && codes[2] == 127, "signed: -absmax is code 0");
    checkBlock(m, x, "-absmax");
    ++blocks;
  }
  std::printf("  %-8s %d blocks (absmax, codes, tails, round-trip bound; every variant): %s\n",
              m.name, blocks, verdict(before));
}

// Every variant gives the baseline's codes on a large varied input.
void checkVariantsAgree(const NamedMap& m, std::mt19937& rng) {
  std::vector<float> ys(1 << 20);
  std::uniform_int_distribution<uint32_t> pattern(0, 0x3f800000u);
  for (float& y : ys) y = floatOf(pattern(rng) | (m.isSigned && (rng() & 1) ? 0x80000000u : 0u));
  std::vector<uint8_t> expected(ys.size()), codes(ys.size());
  codesBaseline(m.map, ys.data(), ys.size(), expected.data());
  for (const Variant& variant : variants()) {
    if (!variant.available) {
      std::printf("  %-8s %s: not supported by this CPU, skipped\n", m.name, variant.name);
      continue;
    }
    variant.codes(m.map, ys.data(), ys.size(), codes.data());
    expect(codes == expected, std::string(m.name) + ": " + variant.name + " codes differ");
  }
}

// ns per element of quantizeBlock and dequantizeBlock, block by block over 1M elements (4 MB of
// float32, beyond L2: streaming, as a step over a large tensor) and over one block again and again
// (in L1: the compute alone). Moments of a realistic spread: normal, scaled like Adam's m and v.
void bench(const NamedMap& m) {
  constexpr size_t kN = 1 << 20;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(kN), out(kN);
  for (float& value : x) value = m.isSigned ? normal(rng) * 1e-3f : std::fabs(normal(rng)) * 1e-6f;
  std::vector<uint8_t> codes(kN);
  std::vector<float> absmax(kN / kBlockwise8Block);
  for (const Variant& variant : variants()) {
    if (!variant.available) continue;
    for (const bool streaming : {true, false}) {
      double best[2] = {INFINITY, INFINITY};
      for (int round = 0; round < 15; ++round) {
        auto t0 = std::chrono::steady_clock::now();
        for (size_t b = 0; b < kN / kBlockwise8Block; ++b) {
          const size_t at = streaming ? b * kBlockwise8Block : 0;
          absmax[b] = variant.quantize(m.map, x.data() + at, kBlockwise8Block, codes.data() + at);
        }
        auto t1 = std::chrono::steady_clock::now();
        for (size_t b = 0; b < kN / kBlockwise8Block; ++b) {
          const size_t at = streaming ? b * kBlockwise8Block : 0;
          variant.dequantize(m.map, codes.data() + at, absmax[b], kBlockwise8Block,
                             out.data() + at);
        }
        auto t2 = std::chrono::steady_clock::now();
        best[0] =
            std::fmin(best[0], std::chrono::duration<double, std::nano>(t1 - t0).count() / kN);
        best[1] =
            std::fmin(best[1], std::chrono::duration<double, std::nano>(t2 - t1).count() / kN);
      }
      std::printf("  bench %-8s %-16s %-9s quantize %.3f ns/element, dequantize %.3f ns/element\n",
                  m.name, variant.name, streaming ? "streaming" : "in L1", best[0], best[1]);
    }
  }
}

}  // namespace
}  // namespace simd_adamw

int main(int argc, char** argv) {
  using namespace simd_adamw;
  bool exhaustive = true, benchmark = false, sweepEveryVariant = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--sample-only") {
      exhaustive = false;
    } else if (arg == "--bench") {
      benchmark = true;
    } else if (arg == "--sweep-every-variant") {
      sweepEveryVariant = true;
    } else {
      std::fprintf(stderr,
                   "usage: blockwise8-codes-test [--sample-only] [--sweep-every-variant] "
                   "[--bench]\n");
      return 2;
    }
  }
  const NamedMap maps[] = {{"signed", kSignedDynamicMap, signedDynamicMap(), true},
                           {"unsigned", kUnsignedDynamicMap, unsignedDynamicMap(), false}};
  std::printf("blockwise8-codes-test\n");
  std::mt19937 rng(12);
  Variant fastest = variants()[0];
  for (const Variant& variant : variants()) {
    if (variant.available) fastest = variant;  // listed slowest first
  }
  for (const NamedMap& m : maps) {
    checkTables(m);
    checkSample(m);
    checkBlocks(m, rng);
    checkVariantsAgree(m, rng);
    if (exhaustive && sweepEveryVariant) {
      for (const Variant& variant : variants()) {
        if (variant.available) checkExhaustive(m, variant);
      }
    } else if (exhaustive) {
      checkExhaustive(m, fastest);
    }
  }
  if (benchmark) {
    for (const NamedMap& m : maps) bench(m);
  }
  std::printf("%s\n", gFailures == 0 ? "blockwise8-codes-test: all checks passed"
                                     : "blockwise8-codes-test: FAILED");
  return gFailures == 0 ? 0 : 1;
}
