// Bench-only: the memory roofline of an AdamW step, measured in the same process as the step.
//
// Every probe has exactly the kernel's memory traffic per element: read param, grad, expAvg and
// expAvgSq; write param, expAvg and expAvgSq, with ordinary (cached) stores as the kernel does,
// since the next step reads those arrays again. Their arithmetic is far below what memory can feed,
// so their time is what moving the 28 bytes per element costs. No single loop is the fastest way to
// move those bytes at every size (bench/RESULTS.md once showed the step at 1.13x a probe, which
// then was no ceiling), so there are eleven, and the bench takes the fastest median as the
// roofline:
//
//   adamw-pattern            the kernel's access pattern with a few multiplies and adds
//   adamw-pattern-prefetch   the same with the kernel's prefetch (one per line, 2 KiB ahead)
//   adamw-pattern-256, adamw-pattern-256-prefetch  the same two as the AVX2 kernel: 256-bit
//   add                      p += g; m += g; v += g*g, 4 lines per stream per iteration, zmm
//   add-prefetch             the same with the software prefetch
//   add-256, add-256-prefetch  the same two in 256-bit vectors
//   adamw-pattern-256-prefetch-far, add-256-prefetch-far, add-prefetch-far  the prefetching ones
//                            with the prefetch 8 KiB ahead instead of 2 KiB: a loop this light
//                            catches up with a 2 KiB prefetch, which the kernel, doing more work
//                            per line, does not (the AVX2 kernel once beat every other probe at 64M
//                            by 8% on the Zen 5 machine)
//
// This file is compiled with -march=native -mprefer-vector-width=512 (native/bench/bench.cmake):
// the probes are the widest, simplest loops this machine runs. That is acceptable only because
// the bench addon is never shipped; the released addon dispatches at run time instead.
//
// The values stay finite and expAvgSq non-negative (|g| <= 1e-2 in the bench, so even millions of
// `add` passes stay far from overflow), so the bench can run the real step on the same arrays right
// after a probe (same pages, same alignment).
//
// Threads: a pass is split exactly as a step of the same length (bench-common.h).
#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "bench-common.h"

namespace simd_adamw {
namespace bench {
namespace {

// Read through volatile so the compiler cannot fold the arithmetic away or specialise on them.
volatile float gKeep = 0.5f;
volatile float gMix = 0.5f;

constexpr size_t kFloatsPerLine = 16;
constexpr size_t kPrefetchAhead = 512;  // floats, as the kernel (native/ops/adamw.h)
constexpr size_t kPrefetchFar = 4 * kPrefetchAhead;

// --- adamw-pattern: the per-element work on [0, count), auto-vectorised.
inline void patternElements(float* __restrict param, const float* __restrict grad,
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

template <bool kPrefetch>
void patternRange(const FourArrays& a, size_t begin, size_t end) {
  const float keep = gKeep;
  const float mix = gMix;
  size_t i = begin;
  if (kPrefetch) {
    // Whole lines while the prefetched address stays inside the arrays.
    for (; end - i >= kPrefetchAhead + kFloatsPerLine; i += kFloatsPerLine) {
      __builtin_prefetch(a.param + i + kPrefetchAhead);
      __builtin_prefetch(a.grad + i + kPrefetchAhead);
      __builtin_prefetch(a.expAvg + i + kPrefetchAhead);
      __builtin_prefetch(a.expAvgSq + i + kPrefetchAhead);
      patternElements(a.param + i, a.grad + i, a.expAvg + i, a.expAvgSq + i, kFloatsPerLine, keep,
                      mix);
    }
  }
  patternElements(a.param + i, a.grad + i, a.expAvg + i, a.expAvgSq + i, end - i, keep, mix);
}

// --- add: four cache lines per stream and step of the inner loop, in GCC vector-extension
// vectors of 64 bytes (zmm registers under this file's flags) or 32 bytes (ymm: on some machines
// the narrower accesses stream DRAM faster, and the AVX2 kernel must not beat the roofline).
// Loads and stores go through memcpy: any alignment, no aliasing assumptions.
typedef float Vec512 __attribute__((vector_size(64)));
typedef float Vec256 __attribute__((vector_size(32)));
constexpr size_t kBlock = 4 * kFloatsPerLine;

template <class Vec>
inline Vec loadVec(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <class Vec>
inline void storeVec(float* p, Vec v) {
  std::memcpy(p, &v, sizeof v);
}

// One block: all loads first, then the stores, through local restrict pointers, so the compiler
// neither reloads the array pointers after each store nor orders a load behind a store.
template <class Vec>
inline void addBlock(float* __restrict param, const float* __restrict grad,
                     float* __restrict expAvg, float* __restrict expAvgSq) {
  constexpr size_t kLanes = sizeof(Vec) / sizeof(float);
  constexpr size_t kUnroll = kBlock / kLanes;
  Vec g[kUnroll], p[kUnroll], m[kUnroll], v[kUnroll];
  for (size_t u = 0; u < kUnroll; ++u) {
    g[u] = loadVec<Vec>(grad + u * kLanes);
    p[u] = loadVec<Vec>(param + u * kLanes);
    m[u] = loadVec<Vec>(expAvg + u * kLanes);
    v[u] = loadVec<Vec>(expAvgSq + u * kLanes);
  }
  for (size_t u = 0; u < kUnroll; ++u) {
    storeVec(param + u * kLanes, p[u] + g[u]);
    storeVec(expAvg + u * kLanes, m[u] + g[u]);
    storeVec(expAvgSq + u * kLanes, v[u] + g[u] * g[u]);
  }
}

template <class Vec, bool kPrefetch, size_t kAhead = kPrefetchAhead>
void addRange(const FourArrays& a, size_t begin, size_t end) {
  float* __restrict param = a.param;
  const float* __restrict grad = a.grad;
  float* __restrict expAvg = a.expAvg;
  float* __restrict expAvgSq = a.expAvgSq;
  size_t i = begin;
  if (kPrefetch) {
    for (; end - i >= kAhead + kBlock; i += kBlock) {
      for (size_t line = 0; line < kBlock; line += kFloatsPerLine) {
        __builtin_prefetch(param + i + line + kAhead);
        __builtin_prefetch(grad + i + line + kAhead);
        __builtin_prefetch(expAvg + i + line + kAhead);
        __builtin_prefetch(expAvgSq + i + line + kAhead);
      }
      addBlock<Vec>(param + i, grad + i, expAvg + i, expAvgSq + i);
    }
  }
  for (; end - i >= kBlock; i += kBlock)
    addBlock<Vec>(param + i, grad + i, expAvg + i, expAvgSq + i);
  for (; i < end; ++i) {
    const float g = grad[i];
    param[i] += g;
    expAvg[i] += g;
    expAvgSq[i] += g * g;
  }
}

// --- adamw-pattern-256: the AdamW pattern exactly as the AVX2 kernel walks memory (a line of two
// 256-bit vectors per step, the prefetch once per line): on the Zen 5 machine the AVX2 kernel
// streamed DRAM up to 8% faster than every zmm probe.
inline void patternVec256(float* __restrict param, const float* __restrict grad,
                          float* __restrict expAvg, float* __restrict expAvgSq, Vec256 keep,
                          Vec256 mix) {
  const Vec256 g = loadVec<Vec256>(grad);
  const Vec256 m = keep * loadVec<Vec256>(expAvg) + mix * g;
  const Vec256 v = keep * loadVec<Vec256>(expAvgSq) + mix * (g * g);
  storeVec(expAvg, m);
  storeVec(expAvgSq, v);
  storeVec(param, keep * loadVec<Vec256>(param) + mix * (m + v));
}

template <bool kPrefetch, size_t kAhead = kPrefetchAhead>
void pattern256Range(const FourArrays& a, size_t begin, size_t end) {
  constexpr size_t kLanes = sizeof(Vec256) / sizeof(float);
  float* __restrict param = a.param;
  const float* __restrict grad = a.grad;
  float* __restrict expAvg = a.expAvg;
  float* __restrict expAvgSq = a.expAvgSq;
  const float keep = gKeep;
  const float mix = gMix;
  const Vec256 keepV = keep - Vec256{};
  const Vec256 mixV = mix - Vec256{};
  size_t i = begin;
  if (kPrefetch) {
    for (; end - i >= kAhead + kFloatsPerLine; i += kFloatsPerLine) {
      __builtin_prefetch(param + i + kAhead);
      __builtin_prefetch(grad + i + kAhead);
      __builtin_prefetch(expAvg + i + kAhead);
      __builtin_prefetch(expAvgSq + i + kAhead);
      for (size_t v = 0; v < kFloatsPerLine; v += kLanes) {
        patternVec256(param + i + v, grad + i + v, expAvg + i + v, expAvgSq + i + v, keepV, mixV);
      }
    }
  }
  for (; end - i >= kLanes; i += kLanes) {
    patternVec256(param + i, grad + i, expAvg + i, expAvgSq + i, keepV, mixV);
  }
  patternElements(param + i, grad + i, expAvg + i, expAvgSq + i, end - i, keep, mix);
}

using ProbeRange = void (*)(const FourArrays&, size_t, size_t);

struct Probe {
  const char* name;
  ProbeRange range;
};

constexpr Probe kProbes[] = {
    {"adamw-pattern", patternRange<false>},
    {"adamw-pattern-prefetch", patternRange<true>},
    {"adamw-pattern-256", pattern256Range<false>},
    {"adamw-pattern-256-prefetch", pattern256Range<true>},
    {"add", addRange<Vec512, false>},
    {"add-prefetch", addRange<Vec512, true>},
    {"add-256", addRange<Vec256, false>},
    {"add-256-prefetch", addRange<Vec256, true>},
    {"adamw-pattern-256-prefetch-far", pattern256Range<true, kPrefetchFar>},
    {"add-prefetch-far", addRange<Vec512, true, kPrefetchFar>},
    {"add-256-prefetch-far", addRange<Vec256, true, kPrefetchFar>},
};

// benchRooflineProbe(param, grad, expAvg, expAvgSq, passes, threads, probe): `passes`
// back-to-back passes of the named probe, each split as a step would be; timed by the caller.
Napi::Value BenchRooflineProbe(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() != 7 || !info[6].IsString()) {
    throw Napi::TypeError::New(
        env, "benchRooflineProbe(param, grad, expAvg, expAvgSq, passes, threads, probe: string)");
  }
  const std::string name = info[6].As<Napi::String>().Utf8Value();
  ProbeRange range = nullptr;
  for (const Probe& probe : kProbes) {
    if (name == probe.name) range = probe.range;
  }
  if (range == nullptr) throw Napi::RangeError::New(env, "Unknown probe '" + name + "'");
  const FourArrays arrays = fourArrays(info, 0);
  const uint32_t passes = positiveInteger(env, info[4], "passes");
  const uint32_t threads = threadCount(env, info[5]);
  runLikeAStep(arrays.length, threads, passes,
               [&](size_t begin, size_t end) { range(arrays, begin, end); });
  return env.Undefined();
}

}  // namespace

void registerRooflineProbes(Napi::Env env, Napi::Object exports) {
  Napi::Array names = Napi::Array::New(env);
  for (uint32_t k = 0; k < sizeof kProbes / sizeof kProbes[0]; ++k) {
    names.Set(k, Napi::String::New(env, kProbes[k].name));
  }
  exports.Set("rooflineProbes", names);
  exports.Set("benchRooflineProbe",
              Napi::Function::New(env, BenchRooflineProbe, "benchRooflineProbe"));
}

}  // namespace bench
}  // namespace simd_adamw
