// Portable gradient-norm kernel: one double per "vector", sixteen scalar partial sums. The
// reference the SIMD paths must match bit for bit; the compiler may vectorize it, which changes no
// result
// (-ffp-contract=off, and it never reorders floating-point additions).
#include "grad-norm-loop.h"

namespace simd_adamw {
namespace {

struct ScalarNormLanes {
  static constexpr size_t kWidth = 1;
  static constexpr size_t kBlocksAtOnce = 1;
  using V = double;

  static V zero() { return 0.0; }
  static V loadWiden(const float* p) { return static_cast<double>(*p); }
  static V add(V a, V b) { return a + b; }
  static V mul(V a, V b) { return a * b; }
  static void store(double* p, V v) { *p = v; }
};

}  // namespace

void sumSquaresScalar(const float* data, size_t length, double* sums) {
  sumSquaresBlocks<ScalarNormLanes>(data, length, sums);
}

}  // namespace simd_adamw
