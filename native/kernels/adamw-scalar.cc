// Portable AdamW kernel: one float per "vector". Runs on any CPU and is the reference the SIMD
// paths must match bit for bit. The compiler may auto-vectorize it; that does not change its
// results, because -ffp-contract=off forbids fusing and the operations stay the same.
#include <cmath>
#include <cstring>

#include "adamw-loop.h"

namespace simd_adamw {
namespace {

struct ScalarLanes {
  static constexpr size_t kWidth = 1;
  using V = float;

  static V load(const float* p) { return *p; }
  static void store(float* p, V v) { *p = v; }
  // Never reached with kWidth == 1 (there is no tail), but the shared loop names them.
  static V loadPartial(const float* p, size_t) { return *p; }
  static void storePartial(float* p, V v, size_t) { *p = v; }

  static V set1(float x) { return x; }
  static V add(V a, V b) { return a + b; }
  static V mul(V a, V b) { return a * b; }
  static V div(V a, V b) { return a / b; }
  static V sqrt(V a) { return std::sqrt(a); }
  static V neg(V a) { return -a; }
  // Same result as the SIMD paths' max-then-fix-NaN: NaN in `a` wins, then NaN in `b`, then max.
  static V nanMax(V a, V b) {
    if (std::isnan(a)) return a;
    return a > b ? a : b;
  }
  static V canonicalizeNan(V a) {
    if (!std::isnan(a)) return a;
    float nan;
    std::memcpy(&nan, &kCanonicalNanBits, sizeof nan);
    return nan;
  }
};

}  // namespace

void adamwScalar(const AdamwTensor& t, const AdamwScalars& s, uint32_t flags, size_t begin,
                 size_t end) {
  adamwKernel<ScalarLanes>(t, s, flags, begin, end);
}

}  // namespace simd_adamw
