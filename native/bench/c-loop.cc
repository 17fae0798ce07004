// Bench-only contender: the AdamW update as a plain C++ loop, the question being how close the
// dispatched SIMD kernel comes to what the compiler makes of the obvious loop.
//
// The same IEEE operations, in the same order, as native/ops/adamw.h for AdamW without
// amsgrad, maximize or gradient scaling:
//   p = p * decay
//   m = beta1 * m + oneMinusBeta1 * g
//   v = beta2 * v + (oneMinusBeta2 * g) * g
//   p = p + negStepSize * (m / (sqrt(v) + epsHat))
// but none of the kernel's NaN canonicalisation on store and no software prefetch.
//
// Compiled -O3 -march=native -ffp-contract=off -fno-math-errno (native/bench/bench.cmake): the
// compiler may vectorise for this very machine but fuses nothing, so results are bitwise the
// kernel's (test/bench-stream-probe.test.ts checks it) and the comparison is of code, not of
// arithmetic. -fno-math-errno is the released addon's flag too; without it std::sqrt is not
// vectorised. -march=native is acceptable only because the bench addon is never shipped.
//
// Threads: split exactly as a step of the same length (bench-common.h).
#include <napi.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "bench-common.h"

namespace simd_adamw {
namespace bench {
namespace {

struct LoopScalars {
  float beta1, oneMinusBeta1, beta2, oneMinusBeta2, decay, negStepSize, epsHat;
};
constexpr uint32_t kScalarCount = 7;

void adamwPlainLoop(float* __restrict param, const float* __restrict grad, float* __restrict expAvg,
                    float* __restrict expAvgSq, size_t count, LoopScalars s) {
  for (size_t i = 0; i < count; ++i) {
    const float g = grad[i];
    const float p = param[i] * s.decay;
    const float m = s.beta1 * expAvg[i] + s.oneMinusBeta1 * g;
    const float v = s.beta2 * expAvgSq[i] + (s.oneMinusBeta2 * g) * g;
    expAvg[i] = m;
    expAvgSq[i] = v;
    param[i] = p + s.negStepSize * (m / (std::sqrt(v) + s.epsHat));
  }
}

// benchCLoop(param, grad, expAvg, expAvgSq, scalars, passes, threads): `passes` updates with the
// float32 roundings of scalars = Float64Array [beta1, 1 - beta1, beta2, 1 - beta2, decay,
// negStepSize, epsHat] (lib/optim/adam.ts computes them in double as PyTorch does), each split
// as a step would be; timed by the caller.
Napi::Value BenchCLoop(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() != 7 || !info[4].IsTypedArray() ||
      info[4].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      info[4].As<Napi::Float64Array>().ElementLength() != kScalarCount) {
    throw Napi::TypeError::New(
        env,
        "benchCLoop(param, grad, expAvg, expAvgSq, scalars: Float64Array(7), "
        "passes, threads)");
  }
  const FourArrays a = fourArrays(info, 0);
  const Napi::Float64Array scalars = info[4].As<Napi::Float64Array>();
  const LoopScalars s{static_cast<float>(scalars[0]), static_cast<float>(scalars[1]),
                      static_cast<float>(scalars[2]), static_cast<float>(scalars[3]),
                      static_cast<float>(scalars[4]), static_cast<float>(scalars[5]),
                      static_cast<float>(scalars[6])};
  const uint32_t passes = positiveInteger(env, info[5], "passes");
  const uint32_t threads = threadCount(env, info[6]);
  runLikeAStep(a.length, threads, passes, [&](size_t begin, size_t end) {
    adamwPlainLoop(a.param + begin, a.grad + begin, a.expAvg + begin, a.expAvgSq + begin,
                   end - begin, s);
  });
  return env.Undefined();
}

}  // namespace

void registerCLoop(Napi::Env env, Napi::Object exports) {
  exports.Set("benchCLoop", Napi::Function::New(env, BenchCLoop, "benchCLoop"));
}

}  // namespace bench
}  // namespace simd_adamw
