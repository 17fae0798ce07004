// The N-API binding: the only place JavaScript values become pointers.
//
// lib/ validates and normalises everything (types, ranges, aliasing between tensors) and computes
// the float32 scalars; this file re-checks only what protects memory (array types, equal lengths,
// no overlap inside one tensor), gathers every tensor of the step, and runs the kernels only after
// all of them passed, so an error can never leave a step half applied.
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "adamw.h"
#include "dispatch.h"

namespace simd_adamw {
namespace {

// The layout of step()'s arguments; binding.d.ts documents the same numbers for lib/.
constexpr size_t kArraysPerTensor = 5;   // param, grad, expAvg, expAvgSq, maxExpAvgSq | null
constexpr size_t kScalarsPerTensor = 8;  // AdamwScalars, in declaration order
const char* const kArrayNames[kArraysPerTensor] = {"param", "grad", "expAvg", "expAvgSq",
                                                   "maxExpAvgSq"};

struct Job {
  AdamwTensor tensor;
  AdamwScalars scalars;
  uint32_t flags;
};

std::string where(size_t tensorIndex, size_t arrayIndex) {
  return std::string("tensor ") + std::to_string(tensorIndex) + " " + kArrayNames[arrayIndex];
}

// Returns the float32 view's data and length, or throws if the value is not a Float32Array.
float* float32Data(const Napi::Env& env, const Napi::Value& value, const std::string& name,
                   size_t* length) {
  if (!value.IsTypedArray() ||
      value.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(env, "Expected a Float32Array for " + name);
  }
  Napi::Float32Array array = value.As<Napi::Float32Array>();
  *length = array.ElementLength();
  return array.Data();
}

bool overlaps(const float* a, const float* b, size_t length) {
  if (length == 0) return false;
  return a < b + length && b < a + length;
}

std::vector<Job> gatherJobs(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() != 3 || !info[0].IsArray() || !info[1].IsTypedArray() ||
      !info[2].IsTypedArray()) {
    throw Napi::TypeError::New(env,
                               "step(arrays: Array, scalars: Float64Array, flags: Uint32Array)");
  }
  // Phase 1: read every element of `arrays`. Get() can run JavaScript (an index getter on
  // Array.prototype, reached through a hole in `arrays`), and that JavaScript can detach or shrink
  // any buffer, so no data pointer or length may be taken before the last Get(). From the end of
  // this loop to the end of the step no JavaScript runs, so what is checked below is what the
  // kernels see.
  const Napi::Array arrays = info[0].As<Napi::Array>();
  const uint32_t arrayCount = arrays.Length();
  // A sparse array can claim 2^32 - 1 elements: compare with the flags' count before reading any.
  if (arrayCount != info[2].As<Napi::TypedArray>().ElementLength() * kArraysPerTensor) {
    throw Napi::RangeError::New(env, "step(): arrays and flags describe different tensor counts");
  }
  std::vector<Napi::Value> arrayValues;
  arrayValues.reserve(arrayCount);
  for (uint32_t i = 0; i < arrayCount; ++i) arrayValues.push_back(arrays.Get(i));

  // Phase 2: pointers and lengths, taken after every JavaScript callback has returned.
  const Napi::TypedArray scalarsValue = info[1].As<Napi::TypedArray>();
  const Napi::TypedArray flagsValue = info[2].As<Napi::TypedArray>();
  if (scalarsValue.TypedArrayType() != napi_float64_array ||
      flagsValue.TypedArrayType() != napi_uint32_array) {
    throw Napi::TypeError::New(env,
                               "step() needs a Float64Array of scalars and a Uint32Array of flags");
  }
  const Napi::Float64Array scalars = scalarsValue.As<Napi::Float64Array>();
  const Napi::Uint32Array flags = flagsValue.As<Napi::Uint32Array>();
  const size_t tensorCount = flags.ElementLength();
  if (arrayValues.size() != tensorCount * kArraysPerTensor ||
      scalars.ElementLength() != tensorCount * kScalarsPerTensor) {
    throw Napi::RangeError::New(
        env, "step(): arrays, scalars and flags describe different tensor counts");
  }

  std::vector<Job> jobs(tensorCount);
  for (size_t k = 0; k < tensorCount; ++k) {
    Job& job = jobs[k];
    job.flags = flags[k];
    const bool amsgrad = (job.flags & kAdamwAmsgrad) != 0;
    float* data[kArraysPerTensor] = {};
    size_t lengths[kArraysPerTensor] = {};
    for (size_t a = 0; a < kArraysPerTensor; ++a) {
      const Napi::Value& value = arrayValues[k * kArraysPerTensor + a];
      if (a == 4 && !amsgrad) continue;  // maxExpAvgSq exists only with amsgrad
      data[a] = float32Data(env, value, where(k, a), &lengths[a]);
      if (lengths[a] != lengths[0]) {
        throw Napi::RangeError::New(env, where(k, a) + " has " + std::to_string(lengths[a]) +
                                             " elements but param has " +
                                             std::to_string(lengths[0]));
      }
    }
    const size_t used = amsgrad ? kArraysPerTensor : kArraysPerTensor - 1;
    for (size_t a = 0; a < used; ++a) {
      for (size_t b = a + 1; b < used; ++b) {
        if (overlaps(data[a], data[b], lengths[0])) {
          throw Napi::RangeError::New(
              env, where(k, a) + " and " + kArrayNames[b] + " overlap in memory");
        }
      }
    }
    job.tensor = AdamwTensor{data[0], data[1], data[2], data[3], data[4], lengths[0]};
    const double* s = scalars.Data() + k * kScalarsPerTensor;
    job.scalars =
        AdamwScalars{static_cast<float>(s[0]), static_cast<float>(s[1]), static_cast<float>(s[2]),
                     static_cast<float>(s[3]), static_cast<float>(s[4]), static_cast<float>(s[5]),
                     static_cast<float>(s[6]), static_cast<float>(s[7])};
  }
  return jobs;
}

// step(arrays, scalars, flags): one Adam/AdamW step over every tensor, in one call.
Napi::Value Step(const Napi::CallbackInfo& info) {
  const std::vector<Job> jobs = gatherJobs(info);
  const AdamwKernel kernel = activeIsa().kernel;
  for (const Job& job : jobs) {
    kernel(job.tensor, job.scalars, job.flags, 0, job.tensor.length);
  }
  return info.Env().Undefined();
}

Napi::Value NamesToArray(const Napi::Env& env, const std::vector<std::string>& names) {
  Napi::Array array = Napi::Array::New(env, names.size());
  for (size_t i = 0; i < names.size(); ++i) array.Set(static_cast<uint32_t>(i), names[i]);
  return array;
}

Napi::Value CompiledIsas(const Napi::CallbackInfo& info) {
  std::vector<std::string> names;
  for (const IsaInfo& isa : compiledIsas()) names.emplace_back(isa.name);
  return NamesToArray(info.Env(), names);
}

Napi::Value AvailableIsas(const Napi::CallbackInfo& info) {
  return NamesToArray(info.Env(), availableIsaNames());
}

Napi::Value ActiveIsa(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), activeIsa().name);
}

// setIsa(name): true if switched, false if the name is unknown or this CPU cannot run it.
Napi::Value SetIsa(const Napi::CallbackInfo& info) {
  if (info.Length() != 1 || !info[0].IsString()) {
    throw Napi::TypeError::New(info.Env(), "setIsa(name: string)");
  }
  return Napi::Boolean::New(info.Env(), setActiveIsa(info[0].As<Napi::String>().Utf8Value()));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("step", Napi::Function::New(env, Step, "step"));
  exports.Set("compiledIsas", Napi::Function::New(env, CompiledIsas, "compiledIsas"));
  exports.Set("availableIsas", Napi::Function::New(env, AvailableIsas, "availableIsas"));
  exports.Set("activeIsa", Napi::Function::New(env, ActiveIsa, "activeIsa"));
  exports.Set("setIsa", Napi::Function::New(env, SetIsa, "setIsa"));
  exports.Set("ARRAYS_PER_TENSOR", Napi::Number::New(env, kArraysPerTensor));
  exports.Set("SCALARS_PER_TENSOR", Napi::Number::New(env, kScalarsPerTensor));
  return exports;
}

}  // namespace
}  // namespace simd_adamw

// NODE_API_MODULE needs an unqualified function name.
static Napi::Object InitSimdAdamw(Napi::Env env, Napi::Object exports) {
  return simd_adamw::Init(env, exports);
}
NODE_API_MODULE(simd_adamw, InitSimdAdamw)
