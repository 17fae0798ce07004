// Bench-only: the memory roofline of the lean steps, measured in the same process as the steps and
// on the optimizer's own arrays: AdamW's lean state (issue 12, two moments) and Lion (issue 13, one
// moment). Each probe moves exactly the bytes of one step per element, with arithmetic far below
// what memory can feed:
//
//   read param (f32), grad (f32 or bf16 bits) and each moment (f32, bf16 bits or 8-bit codes);
//   write param and each moment; with 8-bit codes also read and write each block's absmax.
//
//   AdamW (benchLeanProbe, moments expAvg and expAvgSq):
//   bf16 state, f32 grads   4+4 + 4 + 2+2 + 2+2      = 20 B/param
//   bf16 state, bf16 grads  4+4 + 2 + 2+2 + 2+2      = 18 B/param
//   blockwise8, f32 grads   4+4 + 4 + 1+1 + 1+1      = 16 B/param + 16 B per 256 (absmax r/w)
//   blockwise8, bf16 grads  4+4 + 2 + 1+1 + 1+1      = 14 B/param + 16 B per 256
//   Lion (benchLionProbe, the one moment expAvg):
//   f32 state, f32 grads    4+4 + 4 + 4+4            = 20 B/param
//   bf16 state, f32 grads   4+4 + 4 + 2+2            = 16 B/param
//   blockwise8, f32 grads   4+4 + 4 + 1+1            = 14 B/param + 8 B per 256
//   (bf16 grads: 2 B/param less)
//
// The work per element is p += widen(g) * scale, m += delta, v += delta (integer adds on the
// codes and bits, a float add on float32 state), absmax += delta per block: with scale = delta =
// 0, as the bench runs them, every value stays what it was (the steps that run next on the same
// arrays see valid state), yet the compiler, which cannot know the two numbers, must load and
// store every byte. The tests (test/bench-lean-probe.test.ts) run them with 1 and check that every
// element and block moved.
//
// Six loop shapes, as for the float32 probes: auto-vectorised (512-bit under this file's flags) and
// in explicit 256-bit vectors, each plain and with software prefetch 512 or 2048 params ahead (the
// kernel's 2 KiB and the far probes' 8 KiB of float32 params; every stream is prefetched once per
// line at the same element distance).
//
// Threads: a pass is split as a blockwise8 step is, into as many parts as the step of the same
// length uses threads (runner.h threadsFor/partsFor), cut at multiples of 256 elements (for an
// elementwise float32 or bf16 step, which cuts at its own smaller blocks, the parts differ by at
// most 255 elements).
//
// Compiled with -march=native -mprefer-vector-width=512 like roofline-probes.cc (bench.cmake).
#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>

#include "bench-common.h"

namespace simd_adamw {
namespace bench {
namespace {

constexpr size_t kBlock = 256;
constexpr size_t kLineBytes = 64;

inline float widen(float x) { return x; }
inline float widen(uint16_t bits) {
  const uint32_t u = uint32_t{bits} << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// kMoments 2: AdamW's expAvg and expAvgSq; 1: Lion's expAvg alone (expAvgSq and its absmax null).
template <class Grad, class State>
struct LeanArrays {
  float* param;
  const Grad* grad;
  State* expAvg;
  State* expAvgSq;        // null with one moment
  float* expAvgAbsmax;    // null without blocks
  float* expAvgSqAbsmax;  // null without blocks or with one moment
  size_t length;
};

template <int kMoments, class Grad, class State>
inline void leanElements(float* __restrict param, const Grad* __restrict grad,
                         State* __restrict expAvg, State* __restrict expAvgSq, size_t count,
                         float scale, State delta) {
  for (size_t i = 0; i < count; ++i) {
    param[i] = param[i] + widen(grad[i]) * scale;
    expAvg[i] = static_cast<State>(expAvg[i] + delta);
    if (kMoments == 2) expAvgSq[i] = static_cast<State>(expAvgSq[i] + delta);
  }
}

// The same work in explicit 256-bit vectors (8 floats, with the bf16 and 8-bit streams in 16- and
// 8-byte vectors), as an AVX2 kernel walks memory: on the Zen 5 machine the float32 probes' fastest
// DRAM loop is a 256-bit one. Auto-vectorisation under this file's flags picks 512-bit vectors.
typedef float F32x8 __attribute__((vector_size(32)));
typedef uint32_t U32x8 __attribute__((vector_size(32)));
typedef uint16_t U16x8 __attribute__((vector_size(16)));
typedef uint8_t U8x8 __attribute__((vector_size(8)));

template <class T, class Vec>
inline Vec loadAs(const T* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <class T, class Vec>
inline void storeAs(T* p, Vec v) {
  std::memcpy(p, &v, sizeof v);
}

inline F32x8 widen8(const float* grad) { return loadAs<float, F32x8>(grad); }
inline F32x8 widen8(const uint16_t* grad) {
  const U32x8 wide = __builtin_convertvector(loadAs<uint16_t, U16x8>(grad), U32x8) << 16;
  F32x8 f;
  std::memcpy(&f, &wide, sizeof f);
  return f;
}

template <class State>
struct StateVec;
template <>
struct StateVec<float> {
  typedef F32x8 type;
};
template <>
struct StateVec<uint16_t> {
  typedef U16x8 type;
};
template <>
struct StateVec<uint8_t> {
  typedef U8x8 type;
};

template <int kMoments, class Grad, class State>
inline void leanElements256(float* __restrict param, const Grad* __restrict grad,
                            State* __restrict expAvg, State* __restrict expAvgSq, size_t count,
                            float scale, State delta) {
  typedef typename StateVec<State>::type S;
  const F32x8 scaleV = scale - F32x8{};
  const S deltaV = delta - S{};
  size_t i = 0;
  for (; count - i >= 8; i += 8) {
    storeAs(param + i, loadAs<float, F32x8>(param + i) + widen8(grad + i) * scaleV);
    storeAs(expAvg + i, loadAs<State, S>(expAvg + i) + deltaV);
    if (kMoments == 2) storeAs(expAvgSq + i, loadAs<State, S>(expAvgSq + i) + deltaV);
  }
  leanElements<kMoments>(param + i, grad + i, expAvg + i, expAvgSq + i, count - i, scale, delta);
}

template <class T>
inline void prefetchLines(const T* p) {
  for (size_t byte = 0; byte < kBlock * sizeof(T); byte += kLineBytes) {
    __builtin_prefetch(reinterpret_cast<const char*>(p) + byte);
  }
}

// Elements [begin, end) (begin a multiple of kBlock), one block of 256 at a time, so that a block's
// absmax is touched once as the step touches it; kAhead = 0: no prefetch.
template <int kMoments, class Grad, class State, size_t kAhead, bool kNarrow>
void leanRange(const LeanArrays<Grad, State>& a, size_t begin, size_t end, float scale, State delta,
               float absmaxDelta) {
  float* __restrict param = a.param;
  const Grad* __restrict grad = a.grad;
  State* __restrict expAvg = a.expAvg;
  State* __restrict expAvgSq = a.expAvgSq;
  const bool blocks = a.expAvgAbsmax != nullptr;
  for (size_t i = begin; i < end; i += kBlock) {
    const size_t count = end - i < kBlock ? end - i : kBlock;
    if (kAhead != 0 && end - i >= kAhead + kBlock) {
      prefetchLines(param + i + kAhead);
      prefetchLines(grad + i + kAhead);
      prefetchLines(expAvg + i + kAhead);
      if (kMoments == 2) prefetchLines(expAvgSq + i + kAhead);
    }
    if (blocks) {
      a.expAvgAbsmax[i / kBlock] += absmaxDelta;
      if (kMoments == 2) a.expAvgSqAbsmax[i / kBlock] += absmaxDelta;
    }
    if (kNarrow) {
      leanElements256<kMoments>(param + i, grad + i, expAvg + i, expAvgSq + i, count, scale, delta);
    } else {
      leanElements<kMoments>(param + i, grad + i, expAvg + i, expAvgSq + i, count, scale, delta);
    }
  }
}

template <class Grad, class State>
using LeanRange = void (*)(const LeanArrays<Grad, State>&, size_t, size_t, float, State, float);

template <int kMoments, class Grad, class State>
LeanRange<Grad, State> rangeFor(const std::string& probe) {
  if (probe == "lean") return leanRange<kMoments, Grad, State, 0, false>;
  if (probe == "lean-prefetch") return leanRange<kMoments, Grad, State, 512, false>;
  if (probe == "lean-prefetch-far") return leanRange<kMoments, Grad, State, 2048, false>;
  if (probe == "lean-256") return leanRange<kMoments, Grad, State, 0, true>;
  if (probe == "lean-256-prefetch") return leanRange<kMoments, Grad, State, 512, true>;
  if (probe == "lean-256-prefetch-far") return leanRange<kMoments, Grad, State, 2048, true>;
  return nullptr;
}

constexpr const char* kProbeNames[] = {"lean",     "lean-prefetch",     "lean-prefetch-far",
                                       "lean-256", "lean-256-prefetch", "lean-256-prefetch-far"};

struct View {
  void* data;
  size_t length;
  size_t bytes;
  napi_typedarray_type type;
};

View viewOf(const Napi::Env& env, const Napi::Value& value, const char* name) {
  if (!value.IsTypedArray()) {
    throw Napi::TypeError::New(env, std::string("Expected a typed array for ") + name);
  }
  Napi::TypedArray array = value.As<Napi::TypedArray>();
  Napi::ArrayBuffer buffer = array.ArrayBuffer();
  char* data = static_cast<char*>(buffer.Data()) + array.ByteOffset();
  return View{data, array.ElementLength(), array.ByteLength(), array.TypedArrayType()};
}

void requireType(const Napi::Env& env, const View& view, napi_typedarray_type type,
                 const char* name, const char* expected) {
  if (view.type != type) {
    throw Napi::TypeError::New(env, std::string("Expected ") + expected + " for " + name);
  }
}

void requireLength(const Napi::Env& env, const View& view, size_t length, const char* name) {
  if (view.length != length) {
    throw Napi::RangeError::New(env, std::string("Expected ") + std::to_string(length) +
                                         " elements for " + name + " but received " +
                                         std::to_string(view.length));
  }
}

template <int kMoments, class Grad, class State>
void runProbe(const Napi::Env& env, const LeanArrays<Grad, State>& arrays, const std::string& probe,
              uint32_t passes, uint32_t threads, double delta) {
  const LeanRange<Grad, State> range = rangeFor<kMoments, Grad, State>(probe);
  if (range == nullptr) throw Napi::RangeError::New(env, "Unknown lean probe '" + probe + "'");
  const float scale = static_cast<float>(delta);
  const State stateDelta = static_cast<State>(delta);
  const size_t length = arrays.length;
  const size_t blocks = (length + kBlock - 1) / kBlock;
  const unsigned used = threadsFor(length, threads);
  const unsigned parts = partsFor(used);
  const std::function<void(unsigned)> part = [&](unsigned index) {
    const size_t begin = blocks * index / parts * kBlock;
    const size_t endBlock = blocks * (index + 1) / parts * kBlock;
    range(arrays, begin, endBlock < length ? endBlock : length, scale, stateDelta, scale);
  };
  for (uint32_t pass = 0; pass < passes; ++pass) ThreadPool::instance().run(parts, used, part);
}

// No two of the first `count` views share a byte.
void requireSeparate(const Napi::Env& env, const View* views, size_t count) {
  for (size_t a = 0; a < count; ++a) {
    for (size_t b = a + 1; b < count; ++b) {
      const char* pa = static_cast<const char*>(views[a].data);
      const char* pb = static_cast<const char*>(views[b].data);
      if (views[a].bytes != 0 && views[b].bytes != 0 && pa < pb + views[b].bytes &&
          pb < pa + views[a].bytes) {
        throw Napi::RangeError::New(env, "Expected separate memory for every array");
      }
    }
  }
}

// param (a Float32Array) and grad (a Float32Array or bf16 bits of the same length).
void requireParamAndGrad(const Napi::Env& env, const View& param, const View& grad) {
  requireType(env, param, napi_float32_array, "param", "a Float32Array");
  if (grad.type != napi_float32_array && grad.type != napi_uint16_array) {
    throw Napi::TypeError::New(env, "Expected a Float32Array or Uint16Array for grad");
  }
  requireLength(env, grad, param.length, "grad");
}

// info[first], info[first + 1], ...: the absmax arrays of 8-bit codes, Float32Arrays of one float
// per 256 elements.
void absmaxViews(const Napi::CallbackInfo& info, size_t first, const char* const* names,
                 size_t count, size_t length, View* out) {
  for (size_t k = 0; k < count; ++k) {
    out[k] = viewOf(info.Env(), info[first + k], names[k]);
    requireType(info.Env(), out[k], napi_float32_array, names[k], "a Float32Array");
    requireLength(info.Env(), out[k], (length + kBlock - 1) / kBlock, names[k]);
  }
}

template <int kMoments, class State>
void runWithGrad(const Napi::Env& env, const View& param, const View& grad, State* expAvg,
                 State* expAvgSq, float* expAvgAbsmax, float* expAvgSqAbsmax,
                 const std::string& probe, uint32_t passes, uint32_t threads, double delta) {
  float* p = static_cast<float*>(param.data);
  if (grad.type == napi_uint16_array) {
    runProbe<kMoments>(
        env,
        LeanArrays<uint16_t, State>{p, static_cast<const uint16_t*>(grad.data), expAvg, expAvgSq,
                                    expAvgAbsmax, expAvgSqAbsmax, param.length},
        probe, passes, threads, delta);
  } else {
    runProbe<kMoments>(
        env,
        LeanArrays<float, State>{p, static_cast<const float*>(grad.data), expAvg, expAvgSq,
                                 expAvgAbsmax, expAvgSqAbsmax, param.length},
        probe, passes, threads, delta);
  }
}

// benchLeanProbe(param, grad, expAvg, expAvgSq, expAvgAbsmax, expAvgSqAbsmax, passes, threads,
// probe, delta): AdamW's lean traffic. param Float32Array; grad Float32Array or Uint16Array (bf16
// bits); the moments Uint16Array (bf16 state; both absmax null) or Uint8Array (codes; both absmax
// Float32Arrays of ceil(length / 256)); delta 0 in the bench (values unchanged), 1 in the test.
Napi::Value BenchLeanProbe(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() != 10 || !info[8].IsString() || !info[9].IsNumber()) {
    throw Napi::TypeError::New(env,
                               "benchLeanProbe(param, grad, expAvg, expAvgSq, expAvgAbsmax, "
                               "expAvgSqAbsmax, passes, threads, probe: string, delta: number)");
  }
  const View param = viewOf(env, info[0], "param");
  const View grad = viewOf(env, info[1], "grad");
  requireParamAndGrad(env, param, grad);
  const size_t length = param.length;
  const View expAvg = viewOf(env, info[2], "expAvg");
  const View expAvgSq = viewOf(env, info[3], "expAvgSq");
  if (expAvg.type != napi_uint16_array && expAvg.type != napi_uint8_array) {
    throw Napi::TypeError::New(env, "Expected a Uint16Array or Uint8Array for expAvg");
  }
  requireType(env, expAvgSq, expAvg.type, "expAvgSq", "the type of expAvg");
  requireLength(env, expAvg, length, "expAvg");
  requireLength(env, expAvgSq, length, "expAvgSq");
  const bool codes = expAvg.type == napi_uint8_array;
  View views[6] = {param, grad, expAvg, expAvgSq, {}, {}};
  size_t count = 4;
  if (codes) {
    const char* const names[2] = {"expAvgAbsmax", "expAvgSqAbsmax"};
    absmaxViews(info, 4, names, 2, length, views + 4);
    count = 6;
  } else if (!info[4].IsNull() || !info[5].IsNull()) {
    throw Napi::TypeError::New(env, "Expected null for the absmax arrays of bf16 state");
  }
  requireSeparate(env, views, count);
  const uint32_t passes = positiveInteger(env, info[6], "passes");
  const uint32_t threads = threadCount(env, info[7]);
  const std::string probe = info[8].As<Napi::String>().Utf8Value();
  const double delta = info[9].As<Napi::Number>().DoubleValue();
  if (codes) {
    runWithGrad<2>(env, param, grad, static_cast<uint8_t*>(expAvg.data),
                   static_cast<uint8_t*>(expAvgSq.data), static_cast<float*>(views[4].data),
                   static_cast<float*>(views[5].data), probe, passes, threads, delta);
  } else {
    runWithGrad<2>(env, param, grad, static_cast<uint16_t*>(expAvg.data),
                   static_cast<uint16_t*>(expAvgSq.data), nullptr, nullptr, probe, passes, threads,
                   delta);
  }
  return env.Undefined();
}

// benchLionProbe(param, grad, expAvg, expAvgAbsmax, passes, threads, probe, delta): Lion's traffic
// (one moment). param Float32Array; grad Float32Array or Uint16Array (bf16 bits); expAvg a
// Float32Array or Uint16Array (bf16 bits; absmax null) or Uint8Array (codes; absmax a Float32Array
// of ceil(length / 256)); delta 0 in the bench (values unchanged), 1 in the test.
Napi::Value BenchLionProbe(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() != 8 || !info[6].IsString() || !info[7].IsNumber()) {
    throw Napi::TypeError::New(env,
                               "benchLionProbe(param, grad, expAvg, expAvgAbsmax, passes, "
                               "threads, probe: string, delta: number)");
  }
  const View param = viewOf(env, info[0], "param");
  const View grad = viewOf(env, info[1], "grad");
  requireParamAndGrad(env, param, grad);
  const size_t length = param.length;
  const View expAvg = viewOf(env, info[2], "expAvg");
  if (expAvg.type != napi_float32_array && expAvg.type != napi_uint16_array &&
      expAvg.type != napi_uint8_array) {
    throw Napi::TypeError::New(env,
                               "Expected a Float32Array, Uint16Array or Uint8Array for expAvg");
  }
  requireLength(env, expAvg, length, "expAvg");
  const bool codes = expAvg.type == napi_uint8_array;
  View views[4] = {param, grad, expAvg, {}};
  if (codes) {
    const char* const names[1] = {"expAvgAbsmax"};
    absmaxViews(info, 3, names, 1, length, views + 3);
  } else if (!info[3].IsNull()) {
    throw Napi::TypeError::New(env, "Expected null for expAvgAbsmax of float32 or bf16 state");
  }
  requireSeparate(env, views, codes ? 4 : 3);
  const uint32_t passes = positiveInteger(env, info[4], "passes");
  const uint32_t threads = threadCount(env, info[5]);
  const std::string probe = info[6].As<Napi::String>().Utf8Value();
  const double delta = info[7].As<Napi::Number>().DoubleValue();
  if (codes) {
    runWithGrad<1>(env, param, grad, static_cast<uint8_t*>(expAvg.data),
                   static_cast<uint8_t*>(nullptr), static_cast<float*>(views[3].data), nullptr,
                   probe, passes, threads, delta);
  } else if (expAvg.type == napi_uint16_array) {
    runWithGrad<1>(env, param, grad, static_cast<uint16_t*>(expAvg.data),
                   static_cast<uint16_t*>(nullptr), nullptr, nullptr, probe, passes, threads,
                   delta);
  } else {
    runWithGrad<1>(env, param, grad, static_cast<float*>(expAvg.data), static_cast<float*>(nullptr),
                   nullptr, nullptr, probe, passes, threads, delta);
  }
  return env.Undefined();
}

}  // namespace

void registerLeanProbes(Napi::Env env, Napi::Object exports) {
  Napi::Array names = Napi::Array::New(env);
  for (uint32_t k = 0; k < sizeof kProbeNames / sizeof kProbeNames[0]; ++k) {
    names.Set(k, Napi::String::New(env, kProbeNames[k]));
  }
  exports.Set("leanProbes", names);
  exports.Set("benchLeanProbe", Napi::Function::New(env, BenchLeanProbe, "benchLeanProbe"));
  exports.Set("benchLionProbe", Napi::Function::New(env, BenchLionProbe, "benchLionProbe"));
}

}  // namespace bench
}  // namespace simd_adamw
