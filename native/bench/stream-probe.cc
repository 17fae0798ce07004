// Bench-only: the memory roofline of an AdamW step, measured in the same process as the step.
//
// streamPass() has exactly the kernel's memory pattern, per element: read param, grad, expAvg and
// expAvgSq; write param, expAvg and expAvgSq, with ordinary (cached) stores as the kernel does,
// since the next step reads those arrays again. Its arithmetic is a handful of adds and multiplies
// by runtime constants, far below what memory can feed, so its time is what moving the 28 bytes per
// element costs on this machine: the ceiling for any AdamW kernel at the same size and thread
// count.
//
// The values stay finite and expAvgSq stays non-negative, so the bench can run the real step on the
// same arrays right after the probe (same pages, same alignment).
//
// Threads: a pass is split exactly as a step of the same length (native/step.cc): threadsFor() of
// the requested count, kPartsPerThread parts per thread, on the same persistent pool. So at a given
// thread setting the probe and the step differ only in the per-element work, and "fraction of
// the roofline" measures the kernel, not the split.
//
// Exported to JavaScript as benchStreamProbe (see binding.d.ts); nothing in lib/ uses it.
#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "../step.h"
#include "../thread-pool.h"

namespace simd_adamw {
namespace {

// Read through volatile so the compiler cannot fold the arithmetic away or specialise on them.
volatile float gKeep = 0.5f;
volatile float gMix = 0.5f;

// The per-element work on [0, count): reads all four arrays, writes three.
inline void streamElements(float* __restrict param, const float* __restrict grad,
                           float* __restrict expAvg, float* __restrict expAvgSq, size_t count,
                           float keep, float mix) {
  for (size_t i = 0; i < count; ++i) {
    const float g = grad[i];
    const float m = keep * expAvg[i] + mix * g;
    const float v = keep * expAvgSq[i] + mix * (g * g);
    expAvg[i] = m;
    expAvgSq[i] = v;
    param[i] = keep * param[i] + mix * (m + v);
  }
}

// Two ways to stream, both measured by the bench, which takes the faster as the roofline: which
// one wins depends on the size and on what else the machine's memory is serving.
//
// target_clones compiles an AVX-512, an AVX2 and a baseline copy of each, and the loader picks the
// best this CPU runs, so the roofline is never held back by the vector width.
__attribute__((target_clones("avx512f", "avx2", "default"))) void streamPass(
    float* __restrict param, const float* __restrict grad, float* __restrict expAvg,
    float* __restrict expAvgSq, size_t begin, size_t end, float keep, float mix) {
  streamElements(param + begin, grad + begin, expAvg + begin, expAvgSq + begin, end - begin, keep,
                 mix);
}

// The same, with a software prefetch of each stream kPrefetchAhead floats ahead, once per 64-byte
// line: more memory requests in flight than the hardware prefetcher alone keeps.
constexpr size_t kFloatsPerLine = 16;
constexpr size_t kPrefetchAhead = 512;

__attribute__((target_clones("avx512f", "avx2", "default"))) void streamPassPrefetch(
    float* __restrict param, const float* __restrict grad, float* __restrict expAvg,
    float* __restrict expAvgSq, size_t begin, size_t end, float keep, float mix) {
  size_t i = begin;
  // Whole lines while the prefetched address stays inside the arrays.
  for (; end - i >= kPrefetchAhead + kFloatsPerLine; i += kFloatsPerLine) {
    __builtin_prefetch(param + i + kPrefetchAhead);
    __builtin_prefetch(grad + i + kPrefetchAhead);
    __builtin_prefetch(expAvg + i + kPrefetchAhead);
    __builtin_prefetch(expAvgSq + i + kPrefetchAhead);
    streamElements(param + i, grad + i, expAvg + i, expAvgSq + i, kFloatsPerLine, keep, mix);
  }
  streamElements(param + i, grad + i, expAvg + i, expAvgSq + i, end - i, keep, mix);
}

float* float32Data(const Napi::Env& env, const Napi::Value& value, const char* name,
                   size_t* length) {
  if (!value.IsTypedArray() ||
      value.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(env, std::string("Expected a Float32Array for ") + name);
  }
  Napi::Float32Array array = value.As<Napi::Float32Array>();
  *length = array.ElementLength();
  return array.Data();
}

uint32_t positiveInteger(const Napi::Env& env, const Napi::Value& value, const char* name) {
  if (!value.IsNumber()) {
    throw Napi::TypeError::New(env, std::string("Expected a number for ") + name);
  }
  const double number = value.As<Napi::Number>().DoubleValue();
  if (!(number >= 1 && number <= 4294967295.0) || number != static_cast<uint32_t>(number)) {
    throw Napi::RangeError::New(env, std::string("Expected an integer >= 1 for ") + name);
  }
  return static_cast<uint32_t>(number);
}

bool overlaps(const float* a, const float* b, size_t length) {
  return length != 0 && a < b + length && b < a + length;
}

// benchStreamProbe(param, grad, expAvg, expAvgSq, passes, threads, prefetch): `passes`
// back-to-back passes over the four arrays, each split across up to `threads` threads as a step
// would be; timed by the caller.
Napi::Value BenchStreamProbe(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() != 7 || !info[6].IsBoolean()) {
    throw Napi::TypeError::New(
        env, "benchStreamProbe(param, grad, expAvg, expAvgSq, passes, threads, prefetch: boolean)");
  }
  const char* const names[4] = {"param", "grad", "expAvg", "expAvgSq"};
  float* data[4] = {};
  size_t length = 0;
  for (size_t a = 0; a < 4; ++a) {
    size_t arrayLength = 0;
    data[a] = float32Data(env, info[a], names[a], &arrayLength);
    if (a == 0) length = arrayLength;
    if (arrayLength != length) {
      throw Napi::RangeError::New(env, std::string("Expected ") + std::to_string(length) +
                                           " elements for " + names[a] + " but received " +
                                           std::to_string(arrayLength));
    }
  }
  for (size_t a = 0; a < 4; ++a) {
    for (size_t b = a + 1; b < 4; ++b) {
      if (overlaps(data[a], data[b], length)) {
        throw Napi::RangeError::New(env, std::string("Expected separate memory for ") + names[a] +
                                             " and " + names[b] + " but they overlap");
      }
    }
  }
  const uint32_t passes = positiveInteger(env, info[4], "passes");
  const uint32_t threads = positiveInteger(env, info[5], "threads");
  if (threads > ThreadPool::kMaxThreads) {
    throw Napi::RangeError::New(
        env, "Expected at most " + std::to_string(ThreadPool::kMaxThreads) + " for threads");
  }

  const float keep = gKeep;
  const float mix = gMix;
  const auto pass = info[6].As<Napi::Boolean>().Value() ? streamPassPrefetch : streamPass;
  const unsigned used = threadsFor(length, threads);
  const unsigned parts = partsFor(used);
  const auto part = [&](unsigned index) {
    const size_t begin = length * index / parts;
    const size_t end = length * (index + 1) / parts;
    pass(data[0], data[1], data[2], data[3], begin, end, keep, mix);
  };
  for (uint32_t pass = 0; pass < passes; ++pass) {
    ThreadPool::instance().run(parts, used, part);
  }
  return env.Undefined();
}

}  // namespace

// Called once from the addon's Init (native/binding.cc).
void registerBenchExports(Napi::Env env, Napi::Object exports) {
  exports.Set("benchStreamProbe", Napi::Function::New(env, BenchStreamProbe, "benchStreamProbe"));
}

}  // namespace simd_adamw
