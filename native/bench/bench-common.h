// What every export of the bench addon (native/bench/) shares: the argument checks, which protect
// memory and run before any array is touched, and the split of a pass across threads, which is
// exactly a step's (native/runner.h), so a probe or the C loop and the step of the same length
// differ only in their per-element work.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "../runner.h"
#include "../thread-pool.h"

namespace simd_adamw {
namespace bench {

// The four arrays of one AdamW tensor, checked: Float32Arrays of one length, no two overlapping.
struct FourArrays {
  float* param;
  float* grad;
  float* expAvg;
  float* expAvgSq;
  size_t length;
};

inline float* float32Data(const Napi::Env& env, const Napi::Value& value, const char* name,
                          size_t* length) {
  if (!value.IsTypedArray() ||
      value.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(env, std::string("Expected a Float32Array for ") + name);
  }
  Napi::Float32Array array = value.As<Napi::Float32Array>();
  *length = array.ElementLength();
  return array.Data();
}

inline bool overlaps(const float* a, const float* b, size_t length) {
  return length != 0 && a < b + length && b < a + length;
}

// info[first .. first + 4): param, grad, expAvg, expAvgSq.
inline FourArrays fourArrays(const Napi::CallbackInfo& info, size_t first) {
  const Napi::Env env = info.Env();
  const char* const names[4] = {"param", "grad", "expAvg", "expAvgSq"};
  float* data[4] = {};
  size_t length = 0;
  for (size_t a = 0; a < 4; ++a) {
    size_t arrayLength = 0;
    data[a] = float32Data(env, info[first + a], names[a], &arrayLength);
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
  return FourArrays{data[0], data[1], data[2], data[3], length};
}

inline uint32_t positiveInteger(const Napi::Env& env, const Napi::Value& value, const char* name) {
  if (!value.IsNumber()) {
    throw Napi::TypeError::New(env, std::string("Expected a number for ") + name);
  }
  const double number = value.As<Napi::Number>().DoubleValue();
  if (!(number >= 1 && number <= 4294967295.0) || number != static_cast<uint32_t>(number)) {
    throw Napi::RangeError::New(env, std::string("Expected an integer >= 1 for ") + name);
  }
  return static_cast<uint32_t>(number);
}

inline uint32_t threadCount(const Napi::Env& env, const Napi::Value& value) {
  const uint32_t threads = positiveInteger(env, value, "threads");
  if (threads > ThreadPool::kMaxThreads) {
    throw Napi::RangeError::New(
        env, "Expected at most " + std::to_string(ThreadPool::kMaxThreads) + " for threads");
  }
  return threads;
}

// `passes` back-to-back passes over [0, length), each cut as a step of `length` elements on up to
// `threads` threads is cut (threadsFor, partsFor) and run on the thread pool; range(begin, end)
// does one part.
template <class Range>
void runLikeAStep(size_t length, uint32_t threads, uint32_t passes, const Range& range) {
  const unsigned used = threadsFor(length, threads);
  const unsigned parts = partsFor(used);
  const std::function<void(unsigned)> part = [&](unsigned index) {
    range(length * index / parts, length * (index + 1) / parts);
  };
  for (uint32_t pass = 0; pass < passes; ++pass) ThreadPool::instance().run(parts, used, part);
}

}  // namespace bench
}  // namespace simd_adamw
