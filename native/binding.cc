// The N-API binding: the only place JavaScript values become pointers.
//
// lib/ validates and normalises everything (types, ranges, aliasing, with names the caller knows)
// and computes the float32 scalars; this file re-checks only what protects memory (array types,
// equal lengths, no two arrays of the step sharing a byte), gathers every tensor of the step, and
// runs the kernels only after all of them passed, so an error can never leave a step half applied.
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "adamw.h"
#include "dispatch.h"
#include "grad-norm.h"
#include "step.h"
#include "thread-pool.h"
#include "train-step.h"

namespace simd_adamw {

// Bench-only exports (benchStreamProbe), defined in native/bench/stream-probe.cc.
void registerBenchExports(Napi::Env env, Napi::Object exports);

namespace {

// The layout of step()'s arguments; binding.d.ts documents the same numbers for lib/.
constexpr size_t kArraysPerTensor = 5;   // param, grad, expAvg, expAvgSq, maxExpAvgSq | null
constexpr size_t kScalarsPerTensor = 8;  // AdamwScalars, in declaration order
const char* const kArrayNames[kArraysPerTensor] = {"param", "grad", "expAvg", "expAvgSq",
                                                   "maxExpAvgSq"};

std::string where(size_t tensorIndex, size_t arrayIndex) {
  return std::string("tensor ") + std::to_string(tensorIndex) + " " + kArrayNames[arrayIndex];
}

// Returns the float32 view's data and length, or throws if the value is not a Float32Array.
// `name()` builds the argument's name for the message only when there is an error: a step calls
// this for every array, and formatting labels there cost a measurable part of a small step.
template <class Name>
float* float32Data(const Napi::Env& env, const Napi::Value& value, const Name& name,
                   size_t* length) {
  if (!value.IsTypedArray() ||
      value.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(env, "Expected a Float32Array for " + std::string(name()));
  }
  Napi::Float32Array array = value.As<Napi::Float32Array>();
  *length = array.ElementLength();
  return array.Data();
}

// The bytes of one array, and where it came from.
struct Span {
  uintptr_t begin;
  uintptr_t end;
  size_t index;
};

// Finds two spans that share a byte, by address: views of one buffer, and also distinct
// SharedArrayBuffer objects over the same memory (which JavaScript cannot tell apart). Sorted by
// start, some overlapping pair is adjacent whenever any pair overlaps. Empty spans never overlap.
bool findOverlap(std::vector<Span> spans, size_t* first, size_t* second) {
  spans.erase(
      std::remove_if(spans.begin(), spans.end(), [](const Span& s) { return s.begin == s.end; }),
      spans.end());
  std::sort(spans.begin(), spans.end(),
            [](const Span& a, const Span& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].begin < spans[i - 1].end) {
      *first = std::min(spans[i - 1].index, spans[i].index);
      *second = std::max(spans[i - 1].index, spans[i].index);
      return true;
    }
  }
  return false;
}

Span spanOf(const float* data, size_t length, size_t index) {
  const auto begin = reinterpret_cast<uintptr_t>(data);
  return Span{begin, begin + length * sizeof(float), index};
}

// Reads step()'s arguments into jobs, checking everything that protects memory first. `references`,
// when given, receives a reference to every array, for a step that outlives this call.
std::vector<StepJob> gatherJobs(const Napi::CallbackInfo& info, unsigned* threads,
                                std::vector<Napi::ObjectReference>* references) {
  const Napi::Env env = info.Env();
  // A fifth argument, if any, is the fused step's control (checked in readControl).
  if (info.Length() < 4 || info.Length() > 5 || !info[0].IsArray() || !info[1].IsTypedArray() ||
      !info[2].IsTypedArray() || !info[3].IsNumber() ||
      (info.Length() == 5 && !info[4].IsUndefined() && !info[4].IsTypedArray())) {
    throw Napi::TypeError::New(
        env, "step(arrays: Array, scalars: Float64Array, flags: Uint32Array, threads: number)");
  }
  const double requestedThreads = info[3].As<Napi::Number>().DoubleValue();
  if (!(requestedThreads >= 1 && requestedThreads <= ThreadPool::kMaxThreads)) {
    throw Napi::RangeError::New(
        env, "step(): threads must be in [1, " + std::to_string(ThreadPool::kMaxThreads) + "]");
  }
  *threads = static_cast<unsigned>(requestedThreads);

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

  std::vector<StepJob> jobs(tensorCount);
  std::vector<Span> spans;
  spans.reserve(tensorCount * kArraysPerTensor);
  for (size_t k = 0; k < tensorCount; ++k) {
    StepJob& job = jobs[k];
    job.flags = flags[k];
    const bool amsgrad = (job.flags & kAdamwAmsgrad) != 0;
    float* data[kArraysPerTensor] = {};
    size_t lengths[kArraysPerTensor] = {};
    for (size_t a = 0; a < kArraysPerTensor; ++a) {
      const Napi::Value& value = arrayValues[k * kArraysPerTensor + a];
      if (a == 4 && !amsgrad) continue;  // maxExpAvgSq exists only with amsgrad
      data[a] = float32Data(
          env, value, [&] { return where(k, a); }, &lengths[a]);
      if (references != nullptr) references->push_back(Napi::Persistent(value.As<Napi::Object>()));
      if (lengths[a] != lengths[0]) {
        throw Napi::RangeError::New(env, where(k, a) + " has " + std::to_string(lengths[a]) +
                                             " elements but param has " +
                                             std::to_string(lengths[0]));
      }
    }
    for (size_t a = 0; a < kArraysPerTensor; ++a) {
      if (data[a] != nullptr)
        spans.push_back(spanOf(data[a], lengths[a], k * kArraysPerTensor + a));
    }
    job.tensor = AdamwTensor{data[0], data[1], data[2], data[3], data[4], lengths[0]};
    const double* s = scalars.Data() + k * kScalarsPerTensor;
    job.scalars =
        AdamwScalars{static_cast<float>(s[0]), static_cast<float>(s[1]), static_cast<float>(s[2]),
                     static_cast<float>(s[3]), static_cast<float>(s[4]), static_cast<float>(s[5]),
                     static_cast<float>(s[6]), static_cast<float>(s[7])};
  }
  size_t first = 0, second = 0;
  if (findOverlap(std::move(spans), &first, &second)) {
    throw Napi::RangeError::New(
        env, where(first / kArraysPerTensor, first % kArraysPerTensor) + " and " +
                 where(second / kArraysPerTensor, second % kArraysPerTensor) +
                 " overlap in memory");
  }
  return jobs;
}

// findOverlap(arrays: Float32Array[]): [i, j] with i < j for two arrays that share a byte, or null.
// lib/ uses it to name the culprits; step() runs the same check itself.
Napi::Value FindOverlap(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsArray()) {
    throw Napi::TypeError::New(env, "findOverlap(arrays: Float32Array[])");
  }
  const Napi::Array arrays = info[0].As<Napi::Array>();
  std::vector<Span> spans;
  spans.reserve(arrays.Length());
  for (uint32_t i = 0; i < arrays.Length(); ++i) {
    size_t length = 0;
    const float* data = float32Data(
        env, arrays.Get(i), [i] { return "array " + std::to_string(i); }, &length);
    spans.push_back(spanOf(data, length, i));
  }
  size_t first = 0, second = 0;
  if (!findOverlap(std::move(spans), &first, &second)) return env.Null();
  Napi::Array pair = Napi::Array::New(env, 2);
  pair.Set(0u, Napi::Number::New(env, static_cast<double>(first)));
  pair.Set(1u, Napi::Number::New(env, static_cast<double>(second)));
  return pair;
}

// The fused step's `control` argument (native/train-step.h): a Float64Array that lib/ fills with
// the request and the step fills with its result. binding.d.ts documents the same layout.
enum ControlIndex : size_t {
  kControlMaxNorm,          // in: clip to this norm, or +Inf
  kControlGradScale,        // in: finite, > 0
  kControlOptions,          // in: bit 0 measure the norm, bit 1 skip on a non-finite gradient
  kControlGradNorm,         // out: norm of the unscaled gradients, NaN if not measured
  kControlGradFactor,       // out: what each gradient was multiplied by
  kControlSkipped,          // out: 1 if nothing changed
  kControlClipped,          // out: 1 if clipped
  kControlNonFiniteTensor,  // out: first tensor with a NaN/Inf gradient, or -1
  kControlLength,
};

bool hasControl(const Napi::CallbackInfo& info) {
  return info.Length() > 4 && !info[4].IsUndefined();
}

// Reads and checks the request; touches nothing.
TrainStepRequest readControl(const Napi::Env& env, const Napi::Value& value) {
  if (!value.IsTypedArray() ||
      value.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      value.As<Napi::Float64Array>().ElementLength() != kControlLength) {
    throw Napi::TypeError::New(env, "step(): control must be a Float64Array of " +
                                        std::to_string(kControlLength) + " elements");
  }
  const Napi::Float64Array control = value.As<Napi::Float64Array>();
  const double maxNorm = control[kControlMaxNorm];
  const double gradScale = control[kControlGradScale];
  const double options = control[kControlOptions];
  if (!(maxNorm >= 0) || !(gradScale > 0 && std::isfinite(gradScale)) ||
      !(options == 0 || options == 1 || options == 2 || options == 3)) {
    throw Napi::RangeError::New(
        env, "step(): control needs maxNorm >= 0, a finite gradScale > 0 and options in 0..3");
  }
  const unsigned bits = static_cast<unsigned>(options);
  return TrainStepRequest{maxNorm, gradScale, (bits & 1u) != 0, (bits & 2u) != 0};
}

void writeControl(const Napi::Value& value, const TrainStepResult& result) {
  Napi::Float64Array control = value.As<Napi::Float64Array>();
  // An async step's caller could have detached the buffer meanwhile (lib/ does not).
  if (control.ElementLength() != kControlLength) return;
  control[kControlGradNorm] = result.gradNorm;
  control[kControlGradFactor] = result.gradFactor;
  control[kControlSkipped] = result.skipped ? 1 : 0;
  control[kControlClipped] = result.clipped ? 1 : 0;
  control[kControlNonFiniteTensor] = static_cast<double>(result.nonFiniteTensor);
}

// step(arrays, scalars, flags, threads, control?): one Adam/AdamW step over every tensor, in one
// call; with `control`, the fused step of train-step.h.
Napi::Value Step(const Napi::CallbackInfo& info) {
  unsigned threads = 1;
  std::vector<StepJob> jobs = gatherJobs(info, &threads, nullptr);
  if (hasControl(info)) {
    const TrainStepRequest request = readControl(info.Env(), info[4]);
    writeControl(info[4], runTrainStep(jobs, activeIsa(), threads, request));
  } else {
    runStep(jobs, activeIsa().kernel, threads);
  }
  return info.Env().Undefined();
}

// The same step on a libuv worker thread; the promise settles when it is done. It holds a
// reference to every array so they stay alive even if the caller drops them; the caller must not
// write, transfer or resize them until the promise settles (lib/ rejects a second step meanwhile).
// With `control`, the fused step runs here too, and its result is written to `control` on the
// JavaScript thread before the promise resolves.
class StepWorker : public Napi::AsyncWorker {
 public:
  StepWorker(Napi::Env env, std::vector<StepJob> jobs, unsigned threads,
             std::vector<Napi::ObjectReference> references, const TrainStepRequest* request,
             Napi::Value control)
      : Napi::AsyncWorker(env, "simd-adamw:stepAsync"),
        deferred_(Napi::Promise::Deferred::New(env)),
        jobs_(std::move(jobs)),
        threads_(threads),
        isa_(&activeIsa()),
        references_(std::move(references)),
        fused_(request != nullptr),
        request_(request != nullptr ? *request : TrainStepRequest{}) {
    if (fused_) control_ = Napi::Persistent(control.As<Napi::Object>());
  }

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    if (fused_) {
      result_ = runTrainStep(jobs_, *isa_, threads_, request_);
    } else {
      runStep(jobs_, isa_->kernel, threads_);
    }
  }
  void OnOK() override {
    if (fused_) writeControl(control_.Value(), result_);
    deferred_.Resolve(Env().Undefined());
  }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<StepJob> jobs_;
  unsigned threads_;
  const IsaInfo* isa_;  // chosen when the step is queued, as a synchronous step would
  std::vector<Napi::ObjectReference> references_;
  bool fused_;
  TrainStepRequest request_;
  Napi::ObjectReference control_;
  TrainStepResult result_{};
};

// stepAsync(arrays, scalars, flags, threads, control?): Promise<void>. Argument errors throw
// synchronously.
Napi::Value StepAsync(const Napi::CallbackInfo& info) {
  unsigned threads = 1;
  std::vector<Napi::ObjectReference> references;
  std::vector<StepJob> jobs = gatherJobs(info, &threads, &references);
  const bool fused = hasControl(info);
  const TrainStepRequest request = fused ? readControl(info.Env(), info[4]) : TrainStepRequest{};
  auto* worker =
      new StepWorker(info.Env(), std::move(jobs), threads, std::move(references),
                     fused ? &request : nullptr, fused ? info[4] : info.Env().Undefined());
  const Napi::Promise promise = worker->promise();
  worker->Queue();  // the worker deletes itself after OnOK/OnError
  return promise;
}

// gradNorm(grads: Float32Array[], threads): the L2 norm of all of them, from the canonical sum of
// squares (grad-norm.h): bitwise the same on every ISA and thread count.
Napi::Value GradNorm(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() != 2 || !info[0].IsArray() || !info[1].IsNumber()) {
    throw Napi::TypeError::New(env, "gradNorm(grads: Float32Array[], threads: number)");
  }
  const double requestedThreads = info[1].As<Napi::Number>().DoubleValue();
  if (!(requestedThreads >= 1 && requestedThreads <= ThreadPool::kMaxThreads)) {
    throw Napi::RangeError::New(
        env, "gradNorm(): threads must be in [1, " + std::to_string(ThreadPool::kMaxThreads) + "]");
  }
  // Every element first, then the pointers: Get() can run JavaScript, which could detach a buffer.
  const Napi::Array arrays = info[0].As<Napi::Array>();
  std::vector<Napi::Value> values;
  for (uint32_t i = 0; i < arrays.Length(); ++i) values.push_back(arrays.Get(i));
  std::vector<FloatSpan> grads;
  grads.reserve(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    size_t length = 0;
    const float* data = float32Data(
        env, values[i], [i] { return "grads[" + std::to_string(i) + "]"; }, &length);
    grads.push_back(FloatSpan{data, length});
  }
  const double sumSquares =
      sumOfSquares(grads, activeIsa().sumSquares, static_cast<unsigned>(requestedThreads), nullptr);
  return Napi::Number::New(env, std::sqrt(sumSquares));
}

Napi::Value ThreadsFor(const Napi::CallbackInfo& info) {
  if (info.Length() != 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), "threadsFor(elements: number, threads: number)");
  }
  const double elements = info[0].As<Napi::Number>().DoubleValue();
  const double threads = info[1].As<Napi::Number>().DoubleValue();
  if (!(elements >= 0) || !(threads >= 1 && threads <= ThreadPool::kMaxThreads)) {
    throw Napi::RangeError::New(info.Env(), "threadsFor(): elements >= 0, threads in [1, 256]");
  }
  return Napi::Number::New(
      info.Env(), threadsFor(static_cast<size_t>(elements), static_cast<unsigned>(threads)));
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
  exports.Set("stepAsync", Napi::Function::New(env, StepAsync, "stepAsync"));
  exports.Set("findOverlap", Napi::Function::New(env, FindOverlap, "findOverlap"));
  exports.Set("gradNorm", Napi::Function::New(env, GradNorm, "gradNorm"));
  exports.Set("CONTROL_LENGTH", Napi::Number::New(env, kControlLength));
  exports.Set("threadsFor", Napi::Function::New(env, ThreadsFor, "threadsFor"));
  exports.Set("MAX_THREADS", Napi::Number::New(env, ThreadPool::kMaxThreads));
  exports.Set("compiledIsas", Napi::Function::New(env, CompiledIsas, "compiledIsas"));
  exports.Set("availableIsas", Napi::Function::New(env, AvailableIsas, "availableIsas"));
  exports.Set("activeIsa", Napi::Function::New(env, ActiveIsa, "activeIsa"));
  exports.Set("setIsa", Napi::Function::New(env, SetIsa, "setIsa"));
  exports.Set("ARRAYS_PER_TENSOR", Napi::Number::New(env, kArraysPerTensor));
  exports.Set("SCALARS_PER_TENSOR", Napi::Number::New(env, kScalarsPerTensor));
  registerBenchExports(env, exports);
  return exports;
}

}  // namespace
}  // namespace simd_adamw

// NODE_API_MODULE needs an unqualified function name.
static Napi::Object InitSimdAdamw(Napi::Env env, Napi::Object exports) {
  return simd_adamw::Init(env, exports);
}
NODE_API_MODULE(simd_adamw, InitSimdAdamw)
