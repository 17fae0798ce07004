// The N-API binding: the only place JavaScript values become pointers.
//
// lib/ validates and normalises everything (types, ranges, aliasing, with names the caller knows)
// and computes the double-precision scalars; this file re-checks only what protects memory (array
// types, equal lengths, no two arrays of a plan sharing a byte), once, when a plan is created, and
// per run only what is cheap (counts, set indices, flag bits), all before any array is written, so
// an error can never leave a step half applied. The layouts it checks against are the ops' own
// (native/ops/), exported as native.ops; the control layout is native/control.h.
#include <napi.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "control.h"
#include "dispatch.h"
#include "grad-norm.h"
#include "plan.h"
#include "thread-pool.h"
#include "train-step.h"

namespace simd_adamw {
namespace {

// Returns the float32 view's data and length, or throws if the value is not a Float32Array.
// `name()` builds the argument's name for the message only when there is an error.
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

bool isFloat32Array(const Napi::Value& value) {
  return value.IsTypedArray() &&
         value.As<Napi::TypedArray>().TypedArrayType() == napi_float32_array;
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

// ---------------------------------------------------------------------------------------------
// Plans

// A plan and the references that keep its arrays alive; owned by the object handed to lib/.
struct PlanHandle {
  std::unique_ptr<Plan> plan;
  std::vector<Napi::ObjectReference> references;
};

// Tags a plan's object, so runPlan never unwraps another addon's object (or another one of ours).
constexpr napi_type_tag kPlanTag = {0x73696d6461646d77ull, 0x706c616e00000001ull};

// Where an empty array's data points, so that null can mean "no array" (an empty view may have no
// data pointer). Never read or written: its length is 0.
float gEmpty[1];

bool findOp(const std::string& name, OpId* op) {
  for (unsigned i = 0; i < kOpCount; ++i) {
    if (name == opLayout(static_cast<OpId>(i)).name) {
      *op = static_cast<OpId>(i);
      return true;
    }
  }
  return false;
}

std::string opNames() {
  std::string names;
  for (unsigned i = 0; i < kOpCount; ++i) {
    names += (i == 0 ? "'" : ", '") + std::string(opLayout(static_cast<OpId>(i)).name) + "'";
  }
  return names;
}

// createPlan(op, arrays): gathers and checks the tensors once; see native/plan.h.
Napi::Value CreatePlan(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() != 2 || !info[0].IsString() || !info[1].IsArray()) {
    throw Napi::TypeError::New(env, "createPlan(op: string, arrays: (Float32Array | null)[])");
  }
  OpId op = kOpCount;
  const std::string opName = info[0].As<Napi::String>().Utf8Value();
  if (!findOp(opName, &op)) {
    throw Napi::TypeError::New(
        env, "Expected one of " + opNames() + " for op but received '" + opName + "'");
  }
  const OpLayout& layout = opLayout(op);
  const size_t perTensor = layout.arrayCount;
  const auto optionalFlag = [&](size_t a) -> uint32_t {
    for (size_t o = 0; o < layout.optionalCount; ++o) {
      if (layout.optionalArrays[o].array == a) return layout.optionalArrays[o].flag;
    }
    return 0;
  };
  const auto where = [&](size_t index) {
    return "tensor " + std::to_string(index / perTensor) + " " + layout.arrays[index % perTensor];
  };

  const Napi::Array arrays = info[1].As<Napi::Array>();
  const uint32_t arrayCount = arrays.Length();
  if (arrayCount % perTensor != 0) {
    throw Napi::RangeError::New(
        env, "createPlan(): " + std::to_string(arrayCount) + " arrays is not a multiple of the " +
                 std::to_string(perTensor) + " arrays of a '" + layout.name + "' tensor");
  }
  // Phase 1: read every element. Get() can run JavaScript (an index getter on Array.prototype,
  // reached through a hole in `arrays`), and that JavaScript can detach or shrink any buffer, so no
  // data pointer or length is taken before the last Get(). A value's type cannot change once read,
  // so it is checked here: a sparse array claiming 2^32 - 1 elements fails at its first hole.
  std::vector<Napi::Value> values;
  for (uint32_t i = 0; i < arrayCount; ++i) {
    Napi::Value value = arrays.Get(i);
    if (!isFloat32Array(value) && !(value.IsNull() && optionalFlag(i % perTensor) != 0)) {
      throw Napi::TypeError::New(
          env, "Expected a Float32Array" +
                   std::string(optionalFlag(i % perTensor) != 0 ? " or null" : "") + " for " +
                   where(i));
    }
    values.push_back(value);
  }

  // Phase 2: pointers and lengths, taken after every JavaScript callback has returned. From here
  // to the end of the call no JavaScript runs.
  JobList list;
  list.jobs.resize(arrayCount / perTensor);
  std::vector<Span> spans;
  spans.reserve(arrayCount);
  for (size_t k = 0; k < list.jobs.size(); ++k) {
    Job& job = list.jobs[k];
    job = Job{};
    for (size_t a = 0; a < perTensor; ++a) {
      const size_t index = k * perTensor + a;
      if (values[index].IsNull()) continue;
      size_t length = 0;
      float* data = float32Data(
          env, values[index], [&] { return where(index); }, &length);
      if (a == 0) job.length = length;
      if (length != job.length) {
        throw Napi::RangeError::New(env, where(index) + " has " + std::to_string(length) +
                                             " elements but param has " +
                                             std::to_string(job.length));
      }
      job.arrays[a] = length == 0 ? gEmpty : data;
      spans.push_back(spanOf(data, length, index));
    }
  }
  size_t first = 0, second = 0;
  if (findOverlap(std::move(spans), &first, &second)) {
    throw Napi::RangeError::New(env, where(first) + " and " + where(second) + " overlap in memory");
  }

  auto* handle = new PlanHandle{std::make_unique<Plan>(op, std::move(list)), {}};
  handle->references.reserve(values.size());
  for (const Napi::Value& value : values) {
    if (!value.IsNull()) handle->references.push_back(Napi::Persistent(value.As<Napi::Object>()));
  }
  // A plain object wrapping the plan, not an External: node frees a wrapped object's bookkeeping
  // at exit, but leaks an External's when the External is still alive then (LeakSanitizer reports
  // it in scripts/leak-check.js).
  Napi::Object object = Napi::Object::New(env);
  const napi_status status = napi_wrap(
      env, object, handle,
      [](napi_env, void* data, void*) { delete static_cast<PlanHandle*>(data); }, nullptr, nullptr);
  if (status != napi_ok) {
    delete handle;
    NAPI_THROW_IF_FAILED(env, status, Napi::Value());
  }
  NAPI_THROW_IF_FAILED(env, napi_type_tag_object(env, object, &kPlanTag), Napi::Value());
  return object;
}

// A typed array's data and length, with one N-API call; throws a TypeError naming `what`.
template <class T>
T* typedArrayData(napi_env env, napi_value value, napi_typedarray_type type, const char* what,
                  size_t* length) {
  napi_typedarray_type actual = napi_int8_array;
  void* data = nullptr;
  // napi_get_typedarray_info fails (napi_invalid_arg, no exception) on anything but a typed array.
  if (napi_get_typedarray_info(env, value, &actual, length, &data, nullptr, nullptr) != napi_ok ||
      actual != type) {
    throw Napi::TypeError::New(env, std::string("runPlan(): ") + what);
  }
  return static_cast<T*>(data);
}

// Everything runPlan and runPlanAsync read, checked.
struct RunArguments {
  PlanHandle* handle;
  PlanRun run;
  unsigned threads;
  bool fused;
  TrainStepRequest request;
};

RunArguments readRun(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 5 || info.Length() > 6) {
    throw Napi::TypeError::New(env,
                               "runPlan(plan, scalars: Float64Array, flags: Uint32Array, "
                               "tensorSet: Uint32Array, threads: number, control?: Float64Array)");
  }
  RunArguments args{};
  bool isPlan = false;
  napi_valuetype type = napi_undefined;
  void* handle = nullptr;
  if (napi_typeof(env, info[0], &type) != napi_ok || type != napi_object ||
      napi_check_object_type_tag(env, info[0], &kPlanTag, &isPlan) != napi_ok || !isPlan ||
      napi_unwrap(env, info[0], &handle) != napi_ok || handle == nullptr) {
    throw Napi::TypeError::New(env, "runPlan(): plan must be a plan from createPlan()");
  }
  args.handle = static_cast<PlanHandle*>(handle);
  args.run.scalars = typedArrayData<const double>(
      env, info[1], napi_float64_array, "scalars must be a Float64Array", &args.run.scalarCount);
  args.run.flags = typedArrayData<const uint32_t>(
      env, info[2], napi_uint32_array, "flags must be a Uint32Array", &args.run.setCount);
  args.run.tensorSet = typedArrayData<const uint32_t>(
      env, info[3], napi_uint32_array, "tensorSet must be a Uint32Array", &args.run.tensorCount);
  double threads = 0;
  if (napi_get_value_double(env, info[4], &threads) != napi_ok) {
    throw Napi::TypeError::New(env, "runPlan(): threads must be a number");
  }
  if (!(threads >= 1 && threads <= ThreadPool::kMaxThreads)) {
    throw Napi::RangeError::New(
        env, "runPlan(): threads must be in [1, " + std::to_string(ThreadPool::kMaxThreads) + "]");
  }
  args.threads = static_cast<unsigned>(threads);
  args.fused = info.Length() == 6 && !info[5].IsUndefined();
  if (args.fused) {
    size_t length = 0;
    const double* control = typedArrayData<const double>(
        env, info[5], napi_float64_array, "control must be a Float64Array of 8 elements", &length);
    if (length != kControlLength) {
      throw Napi::TypeError::New(env, "runPlan(): control must be a Float64Array of " +
                                          std::to_string(kControlLength) + " elements");
    }
    const double maxNorm = control[kControlMaxNorm];
    const double gradScale = control[kControlGradScale];
    const double options = control[kControlOptions];
    constexpr unsigned kAllOptions = kControlOptionMeasureNorm | kControlOptionSkipNonFinite;
    if (!(maxNorm >= 0) || !(gradScale > 0 && std::isfinite(gradScale)) ||
        !(options >= 0 && options <= kAllOptions && options == std::floor(options))) {
      throw Napi::RangeError::New(
          env, "runPlan(): control needs maxNorm >= 0, a finite gradScale > 0 and options in 0.." +
                   std::to_string(kAllOptions));
    }
    const unsigned bits = static_cast<unsigned>(options);
    args.request = TrainStepRequest{maxNorm, gradScale, (bits & kControlOptionMeasureNorm) != 0,
                                    (bits & kControlOptionSkipNonFinite) != 0};
  }
  if (args.handle->plan->inFlight) {
    throw Napi::Error::New(env, "runPlan(): this plan's asynchronous run has not settled yet");
  }
  const std::string problem = args.handle->plan->check(args.run);
  if (!problem.empty()) throw Napi::RangeError::New(env, problem);
  return args;
}

void writeControl(const Napi::Env& env, napi_value value, const TrainStepResult& result) {
  size_t length = 0;
  // An async run's caller could have detached the buffer meanwhile (lib/ does not).
  double* control = typedArrayData<double>(env, value, napi_float64_array, "control", &length);
  if (length != kControlLength) return;
  control[kControlGradNorm] = result.gradNorm;
  control[kControlGradFactor] = result.gradFactor;
  control[kControlSkipped] = result.skipped ? 1 : 0;
  control[kControlClipped] = result.clipped ? 1 : 0;
  control[kControlNonFiniteTensor] = static_cast<double>(result.nonFiniteTensor);
}

// runPlan(plan, scalars, flags, tensorSet, threads, control?): one step of every tensor.
Napi::Value RunPlan(const Napi::CallbackInfo& info) {
  const RunArguments args = readRun(info);
  Plan& plan = *args.handle->plan;
  plan.load(args.run);
  const TrainStepResult result =
      plan.run(activeIsa(), args.threads, args.fused ? &args.request : nullptr);
  if (args.fused) writeControl(info.Env(), info[5], result);
  return info.Env().Undefined();
}

// The same run on a libuv worker thread; the promise settles when it is done. It holds the plan
// (and so every array) and control until then; the caller must not write, transfer or resize the
// arrays meanwhile (lib/ rejects a second step, and runPlan refuses the plan).
class RunWorker : public Napi::AsyncWorker {
 public:
  RunWorker(Napi::Env env, const RunArguments& args, Napi::Value plan, Napi::Value control)
      : Napi::AsyncWorker(env, "simd-adamw:runPlanAsync"),
        deferred_(Napi::Promise::Deferred::New(env)),
        plan_(args.handle->plan.get()),
        planReference_(Napi::Persistent(plan.As<Napi::Object>())),
        isa_(&activeIsa()),
        threads_(args.threads),
        fused_(args.fused),
        request_(args.request) {
    if (fused_) control_ = Napi::Persistent(control.As<Napi::Object>());
    plan_->load(args.run);  // copies the scalars, flags and set indices
    plan_->inFlight = true;
  }

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override { result_ = plan_->run(*isa_, threads_, fused_ ? &request_ : nullptr); }
  void OnOK() override {
    plan_->inFlight = false;
    if (fused_) writeControl(Env(), control_.Value(), result_);
    deferred_.Resolve(Env().Undefined());
  }
  void OnError(const Napi::Error& error) override {
    plan_->inFlight = false;
    deferred_.Reject(error.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Plan* plan_;
  Napi::ObjectReference planReference_;  // keeps the plan, and its array references, alive
  const IsaInfo* isa_;  // chosen when the run is queued, as a synchronous run would
  unsigned threads_;
  bool fused_;
  TrainStepRequest request_;
  Napi::ObjectReference control_;
  TrainStepResult result_{};
};

// runPlanAsync(same arguments): Promise<void>. Argument errors throw synchronously.
Napi::Value RunPlanAsync(const Napi::CallbackInfo& info) {
  const RunArguments args = readRun(info);
  auto* worker =
      new RunWorker(info.Env(), args, info[0], args.fused ? info[5] : info.Env().Undefined());
  const Napi::Promise promise = worker->promise();
  worker->Queue();  // the worker deletes itself after OnOK/OnError
  return promise;
}

// ---------------------------------------------------------------------------------------------
// Everything else

// findOverlap(arrays: Float32Array[]): [i, j] with i < j for two arrays that share a byte, or null.
// lib/ uses it to name the culprits; createPlan runs the same check itself.
Napi::Value FindOverlap(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsArray()) {
    throw Napi::TypeError::New(env, "findOverlap(arrays: Float32Array[])");
  }
  // Every element first, then the pointers: Get() can run JavaScript, which could detach a buffer.
  const Napi::Array arrays = info[0].As<Napi::Array>();
  std::vector<Napi::Value> values;
  for (uint32_t i = 0; i < arrays.Length(); ++i) {
    Napi::Value value = arrays.Get(i);
    if (!isFloat32Array(value)) {
      throw Napi::TypeError::New(env, "Expected a Float32Array for array " + std::to_string(i));
    }
    values.push_back(value);
  }
  std::vector<Span> spans;
  spans.reserve(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    size_t length = 0;
    const float* data = float32Data(
        env, values[i], [i] { return "array " + std::to_string(i); }, &length);
    spans.push_back(spanOf(data, length, i));
  }
  size_t first = 0, second = 0;
  if (!findOverlap(std::move(spans), &first, &second)) return env.Null();
  Napi::Array pair = Napi::Array::New(env, 2);
  pair.Set(0u, Napi::Number::New(env, static_cast<double>(first)));
  pair.Set(1u, Napi::Number::New(env, static_cast<double>(second)));
  return pair;
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
  for (uint32_t i = 0; i < arrays.Length(); ++i) {
    Napi::Value value = arrays.Get(i);
    if (!isFloat32Array(value)) {
      throw Napi::TypeError::New(env,
                                 "Expected a Float32Array for grads[" + std::to_string(i) + "]");
    }
    values.push_back(value);
  }
  std::vector<FloatSpan> grads;
  grads.reserve(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    size_t length = 0;
    const float* data = float32Data(
        env, values[i], [i] { return "grads[" + std::to_string(i) + "]"; }, &length);
    grads.push_back(FloatSpan{data, length});
  }
  const double sumSquares = sumOfSquares(grads, activeIsa().kernels->sumSquares,
                                         static_cast<unsigned>(requestedThreads), nullptr);
  return Napi::Number::New(env, std::sqrt(sumSquares));
}

Napi::Array NamesToArray(const Napi::Env& env, const char* const* names, size_t count) {
  Napi::Array array = Napi::Array::New(env, count);
  for (size_t i = 0; i < count; ++i) array.Set(static_cast<uint32_t>(i), names[i]);
  return array;
}

Napi::Value CompiledIsas(const Napi::CallbackInfo& info) {
  std::vector<const char*> names;
  for (const IsaInfo& isa : compiledIsas()) names.push_back(isa.name);
  return NamesToArray(info.Env(), names.data(), names.size());
}

Napi::Value AvailableIsas(const Napi::CallbackInfo& info) {
  const std::vector<std::string> available = availableIsaNames();
  std::vector<const char*> names;
  for (const std::string& name : available) names.push_back(name.c_str());
  return NamesToArray(info.Env(), names.data(), names.size());
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

Napi::Object Frozen(const Napi::Env& env, Napi::Object object) {
  NAPI_THROW_IF_FAILED(env, napi_object_freeze(env, object), object);
  return object;
}

// native.ops: every op's layout (native/ops/op.h), from the ops' own declarations.
Napi::Object OpsObject(const Napi::Env& env) {
  Napi::Object ops = Napi::Object::New(env);
  for (unsigned i = 0; i < kOpCount; ++i) {
    const OpLayout& layout = opLayout(static_cast<OpId>(i));
    const auto flagName = [&](uint32_t bit) {
      for (size_t f = 0; f < layout.flagCount; ++f) {
        if (layout.flags[f].bit == bit) return layout.flags[f].name;
      }
      return "";
    };
    Napi::Object op = Napi::Object::New(env);
    op.Set("arrays", Frozen(env, NamesToArray(env, layout.arrays, layout.arrayCount)));
    Napi::Object optional = Napi::Object::New(env);
    for (size_t o = 0; o < layout.optionalCount; ++o) {
      optional.Set(layout.arrays[layout.optionalArrays[o].array],
                   flagName(layout.optionalArrays[o].flag));
    }
    op.Set("optionalArrays", Frozen(env, optional));
    op.Set("scalars", Frozen(env, NamesToArray(env, layout.scalars, layout.scalarCount)));
    Napi::Object flags = Napi::Object::New(env);
    for (size_t f = 0; f < layout.flagCount; ++f) {
      flags.Set(layout.flags[f].name, Napi::Number::New(env, layout.flags[f].bit));
    }
    op.Set("flags", Frozen(env, flags));
    ops.Set(layout.name, Frozen(env, op));
  }
  return Frozen(env, ops);
}

// native.control: the control array's indices and option bits (native/control.h).
Napi::Object ControlObject(const Napi::Env& env) {
  Napi::Object control = Napi::Object::New(env);
  const auto set = [&](std::string name, size_t value) {
    name[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(name[0])));
    control.Set(name, Napi::Number::New(env, static_cast<double>(value)));
  };
#define SIMD_ADAMW_CONTROL_EXPORT(name, value) set(#name, kControl##name);
  SIMD_ADAMW_FOREACH_CONTROL(SIMD_ADAMW_CONTROL_EXPORT)
#undef SIMD_ADAMW_CONTROL_EXPORT
  return Frozen(env, control);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("ops", OpsObject(env));
  exports.Set("control", ControlObject(env));
  exports.Set("MAX_THREADS", Napi::Number::New(env, ThreadPool::kMaxThreads));
  exports.Set("createPlan", Napi::Function::New(env, CreatePlan, "createPlan"));
  exports.Set("runPlan", Napi::Function::New(env, RunPlan, "runPlan"));
  exports.Set("runPlanAsync", Napi::Function::New(env, RunPlanAsync, "runPlanAsync"));
  exports.Set("gradNorm", Napi::Function::New(env, GradNorm, "gradNorm"));
  exports.Set("findOverlap", Napi::Function::New(env, FindOverlap, "findOverlap"));
  exports.Set("compiledIsas", Napi::Function::New(env, CompiledIsas, "compiledIsas"));
  exports.Set("availableIsas", Napi::Function::New(env, AvailableIsas, "availableIsas"));
  exports.Set("activeIsa", Napi::Function::New(env, ActiveIsa, "activeIsa"));
  exports.Set("setIsa", Napi::Function::New(env, SetIsa, "setIsa"));
  return exports;
}

}  // namespace
}  // namespace simd_adamw

// NODE_API_MODULE needs an unqualified function name.
static Napi::Object InitSimdAdamw(Napi::Env env, Napi::Object exports) {
  return simd_adamw::Init(env, exports);
}
NODE_API_MODULE(simd_adamw, InitSimdAdamw)
