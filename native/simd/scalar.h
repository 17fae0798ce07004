// The portable vector layer: one float (or double) per "vector". Runs on any CPU and is the
// reference every SIMD layer must match bit for bit. The compiler may auto-vectorize code written
// over it; that changes no result, because -ffp-contract=off forbids fusing and the operations stay
// the same.
//
// Every vector layer (native/simd/<isa>.h) defines, in an anonymous namespace (each is compiled
// into its own translation unit with its own -m flags, and a shared inline function with external
// linkage would let the linker keep the AVX-512 copy for all):
//
//   struct F32                          float32 vectors, for elementwise ops (native/ops/adamw.h)
//     kWidth, V                         floats per vector, the vector type
//     load / store                      kWidth floats, any alignment
//     loadPartial / storePartial        the first n < kWidth floats; other lanes read as 0
//     set1, add, mul, div, sqrt, neg    IEEE float32, each rounded once (no fused multiply-add)
//     nanMax(a, b)                      max that returns NaN if either input is NaN, like
//                                       torch.maximum (a plain SIMD max does not)
//     anyNan(a)                         true if any lane is NaN
//     canonicalizeNan(a)                a, with every NaN lane replaced by kCanonicalNanBits
//     selectWhereNan(test, ifNan, else) per lane: ifNan where test is NaN, else the other
//     sign(a)                           torch.sign: +-1 for nonzero (Inf too), a for +-0, the
//                                       canonical NaN for NaN (signBits in convert.h)
//   struct F64                          float64 vectors, for reductions (native/ops/sum-squares.h)
//     kWidth, V, kBlocksAtOnce          doubles per vector; full blocks summed side by side
//     zero()                            all lanes +0
//     loadWiden(p)                      kWidth floats from p, each converted to double (exact)
//     add, mul                          IEEE double, each rounded once
//     load(p) / store(p, v)             kWidth doubles from / to p, any alignment
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "canonical-nan.h"
#include "convert.h"

namespace simd_adamw {
namespace {

struct F32 {
  static constexpr size_t kWidth = 1;
  using V = float;

  static V load(const float* p) { return *p; }
  static void store(float* p, V v) { *p = v; }
  // Never reached with kWidth == 1 (there is no tail), but the shared loops name them.
  static V loadPartial(const float* p, size_t) { return *p; }
  static void storePartial(float* p, V v, size_t) { *p = v; }

  static V set1(float x) { return x; }
  static V add(V a, V b) { return a + b; }
  static V mul(V a, V b) { return a * b; }
  static V div(V a, V b) { return a / b; }
  static V sqrt(V a) { return std::sqrt(a); }
  static V neg(V a) { return -a; }
  // Same result as the SIMD layers' max-then-fix-NaN: NaN in `a` wins, then NaN in `b`, then max.
  static V nanMax(V a, V b) {
    if (std::isnan(a)) return a;
    return a > b ? a : b;
  }
  static bool anyNan(V a) { return std::isnan(a); }
  static V canonicalizeNan(V a) {
    if (!std::isnan(a)) return a;
    float nan;
    std::memcpy(&nan, &kCanonicalNanBits, sizeof nan);
    return nan;
  }
  // Lanes where `test` is NaN take `ifNan`, the others `otherwise`.
  static V selectWhereNan(V test, V ifNan, V otherwise) {
    return std::isnan(test) ? ifNan : otherwise;
  }
  static V sign(V a) { return floatOfBits(signBits(bitsOfFloat(a))); }

  // The lean-state lanes: 16-bit loads and stores and the stochastic rounding's random bits, the
  // definitions of native/simd/convert.h one element at a time.
  using U = uint32_t;
  static V loadBf16(const uint16_t* p) { return floatOfBits(widenBf16(*p)); }
  static V loadBf16Partial(const uint16_t* p, size_t) { return loadBf16(p); }
  static V loadF16(const uint16_t* p) { return floatOfBits(widenF16(*p)); }
  static V loadF16Partial(const uint16_t* p, size_t) { return loadF16(p); }
  static void storeBf16(uint16_t* p, V v) { *p = narrowBf16Rne(bitsOfFloat(v)); }
  static void storeBf16Partial(uint16_t* p, V v, size_t) { storeBf16(p, v); }
  static void storeBf16Stochastic(uint16_t* p, V v, U random16) {
    *p = narrowBf16Stochastic(bitsOfFloat(v), random16);
  }
  static void storeBf16StochasticPartial(uint16_t* p, V v, U random16, size_t) {
    storeBf16Stochastic(p, v, random16);
  }
  static U randomBits(uint32_t key, size_t i) {
    return randomBitsOf(key, static_cast<uint32_t>(i));
  }
  static U low16(U r) { return r & 0xffffu; }
  static U high16(U r) { return r >> 16; }
};

struct F64 {
  static constexpr size_t kWidth = 1;
  static constexpr size_t kBlocksAtOnce = 1;
  using V = double;

  static V zero() { return 0.0; }
  static V loadWiden(const float* p) { return static_cast<double>(*p); }
  static V add(V a, V b) { return a + b; }
  static V mul(V a, V b) { return a * b; }
  static V load(const double* p) { return *p; }
  static void store(double* p, V v) { *p = v; }
};

}  // namespace
}  // namespace simd_adamw
