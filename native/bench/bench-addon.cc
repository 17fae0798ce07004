// The bench-only addon, simd_adamw_bench.node: what the bench measures the step against, in the
// same process and on the same arrays. Never part of the released addon (native/bench/bench.cmake);
// loaded by bench/bench-native.ts only.
//
//   rooflineProbes: string[]                                   the probe names
//   benchRooflineProbe(param, grad, expAvg, expAvgSq, passes, threads, probe)   roofline-probes.cc
//   benchCLoop(param, grad, expAvg, expAvgSq, scalars, passes, threads)         c-loop.cc
//   leanProbes: string[]; benchLeanProbe(param, grad, expAvg, expAvgSq, expAvgAbsmax,
//     expAvgSqAbsmax, passes, threads, probe, delta)   the lean-state rooflines, lean-probes.cc
//   benchLionProbe(param, grad, expAvg, expAvgAbsmax, passes, threads, probe, delta)
//                                           Lion's rooflines (one moment), lean-probes.cc
//   threadsFor(length, threads): number     how many threads a step of `length` uses (runner.h)
#include <napi.h>

#include "bench-common.h"

namespace simd_adamw {
namespace bench {

void registerRooflineProbes(Napi::Env env, Napi::Object exports);
void registerCLoop(Napi::Env env, Napi::Object exports);
void registerLeanProbes(Napi::Env env, Napi::Object exports);

namespace {

Napi::Value ThreadsFor(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() != 2) throw Napi::TypeError::New(env, "threadsFor(length, threads)");
  const uint32_t length = positiveInteger(env, info[0], "length");
  const uint32_t threads = threadCount(env, info[1]);
  return Napi::Number::New(env, threadsFor(length, threads));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  registerRooflineProbes(env, exports);
  registerCLoop(env, exports);
  registerLeanProbes(env, exports);
  exports.Set("threadsFor", Napi::Function::New(env, ThreadsFor, "threadsFor"));
  return exports;
}

}  // namespace
}  // namespace bench
}  // namespace simd_adamw

// NODE_API_MODULE needs an unqualified function name.
static Napi::Object InitSimdAdamwBench(Napi::Env env, Napi::Object exports) {
  return simd_adamw::bench::Init(env, exports);
}

NODE_API_MODULE(simd_adamw_bench, InitSimdAdamwBench)
