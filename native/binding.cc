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
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "control.h"
#include "dispatch.h"
#include "grad-norm.h"
#include "ops/blockwise8-codes.h"
#include "plan.h"
#include "thread-pool.h"
#include "train-step.h"

namespace simd_adamw {
namespace {

size_t elementSizeOf(napi_typedarray_type type) {
  switch (type) {
    case napi_int8_array:
    case napi_uint8_array:
    case napi_uint8_clamped_array:
      return 1;
    case napi_int16_array:
    case napi_uint16_array:
      return 2;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array:
      return 4;
    default:  // float64, bigint64, biguint64 (and any wider type a later N-API adds)
      return 8;
  }
}

// A typed array's element type, data, length in elements and in bytes (napi_get_typedarray_info
// runs no JavaScript). False if `value` is no typed array.
struct TypedView {
  napi_typedarray_type type;
  void* data;
  size_t length;
  size_t bytes;
};

bool typedView(napi_env env, napi_value value, TypedView* view) {
  bool isTypedArray = false;
  if (napi_is_typedarray(env, value, &isTypedArray) != napi_ok || !isTypedArray) return false;
  if (napi_get_typedarray_info(env, value, &view->type, &view->length, &view->data, nullptr,
                               nullptr) != napi_ok) {
    return false;
  }
  view->bytes = view->length * elementSizeOf(view->type);
  return true;
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

Span spanOf(const void* data, size_t bytes, size_t index) {
  const auto begin = reinterpret_cast<uintptr_t>(data);
  return Span{begin, begin + bytes, index};
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
  for (unsigned i = 0; i < kAllOpCount; ++i) {
    if (name == opLayout(static_cast<OpId>(i)).name) {
      *op = static_cast<OpId>(i);
      return true;
    }
  }
  return false;
}

std::string opNames() {
  std::string names;
  for (unsigned i = 0; i < kAllOpCount; ++i) {
    names += (i == 0 ? "'" : ", '") + std::string(opLayout(static_cast<OpId>(i)).name) + "'";
  }
  return names;
}

const char* const kGradDtypeNames[kGradDtypeCount] = {"float32", "bfloat16", "float16"};

// The typed array an array of `type` must be, for the messages and the check.
const char* expectedArrayName(ArrayType type, GradDtype grad) {
  switch (type) {
    case ArrayType::kFloat32:
      return "Float32Array";
    case ArrayType::kBfloat16:
      return "Uint16Array";
    case ArrayType::kUint8:
      return "Uint8Array";
    case ArrayType::kGrad:
      return grad == kGradFloat32 ? "Float32Array" : "Uint16Array";
  }
  return "";
}

napi_typedarray_type expectedArrayType(ArrayType type, GradDtype grad) {
  switch (type) {
    case ArrayType::kFloat32:
      return napi_float32_array;
    case ArrayType::kBfloat16:
      return napi_uint16_array;
    case ArrayType::kUint8:
      return napi_uint8_array;
    case ArrayType::kGrad:
      return grad == kGradFloat32 ? napi_float32_array : napi_uint16_array;
  }
  return napi_float32_array;
}

// The optional-array entry of array `a` of `layout`, or null when the array is required.
const OpOptionalArray* optionalEntry(const OpLayout& layout, size_t a) {
  for (size_t o = 0; o < layout.optionalCount; ++o) {
    if (layout.optionalArrays[o].array == a) return &layout.optionalArrays[o];
  }
  return nullptr;
}

constexpr const char* kCreatePlanSignature =
    "createPlan(op: string | string[], arrays: (TypedArray | null)[], gradDtypes?: Uint8Array, "
    "shapes?: Uint32Array, elementOffsets?: Uint32Array)";

// A tensor's shape as the messages show it.
std::string shapeText(const PhasedShape& shape) {
  return "[" + std::to_string(shape.batches) + ", " + std::to_string(shape.rows) + ", " +
         std::to_string(shape.cols) + "]";
}

// Whether an array of `presence` belongs to a tensor that is (or is not) factored.
bool belongsToShape(ShapePresence presence, bool factored) {
  return presence == ShapePresence::kAny || (presence == ShapePresence::kFactored) == factored;
}

// createPlan(op, arrays, gradDtypes?, shapes?): gathers and checks the tensors once; see
// native/plan.h. shapes: 3 per tensor, [batches, R, C] of a factored tensor of a phased family
// (native/ops/phased.h), [0, 0, 0] for an unfactored one; absent: all unfactored. elementOffsets:
// one per tensor, where its element 0 is in the tensor it is part of (the stochastic-rounding bits
// of a ZeRO-1 rank's range); absent: all 0.
Napi::Value CreatePlan(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const bool hasGradDtypes = info.Length() >= 3 && !info[2].IsUndefined();
  const bool hasShapes = info.Length() >= 4 && !info[3].IsUndefined();
  const bool hasOffsets = info.Length() >= 5 && !info[4].IsUndefined();
  if (info.Length() < 2 || info.Length() > 5 || !(info[0].IsString() || info[0].IsArray()) ||
      !info[1].IsArray()) {
    throw Napi::TypeError::New(env, kCreatePlanSignature);
  }
  if (hasGradDtypes && !(info[2].IsTypedArray() &&
                         info[2].As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array)) {
    throw Napi::TypeError::New(env, "createPlan(): gradDtypes must be a Uint8Array");
  }
  if (hasShapes && !(info[3].IsTypedArray() &&
                     info[3].As<Napi::TypedArray>().TypedArrayType() == napi_uint32_array)) {
    throw Napi::TypeError::New(env, "createPlan(): shapes must be a Uint32Array");
  }
  if (hasOffsets && !(info[4].IsTypedArray() &&
                      info[4].As<Napi::TypedArray>().TypedArrayType() == napi_uint32_array)) {
    throw Napi::TypeError::New(env, "createPlan(): elementOffsets must be a Uint32Array");
  }
  const Napi::Array arrays = info[1].As<Napi::Array>();
  const uint32_t arrayCount = arrays.Length();

  // Phase 1: read every element (of op, then of arrays). Get() can run JavaScript (an index getter
  // on Array.prototype, reached through a hole), and that JavaScript can detach or shrink any
  // buffer, gradDtypes' included, so no data pointer or length is taken before the last Get(). A
  // value's type cannot change once read, so each is checked as far as it can be here: a sparse
  // array claiming 2^32 - 1 elements fails at its first hole.
  std::vector<OpId> ops;  // one per tensor
  const auto readOp = [&](const Napi::Value& value, const std::string& what) {
    OpId op = kOpCount;
    const std::string name = value.IsString() ? value.As<Napi::String>().Utf8Value() : "";
    if (!value.IsString() || !findOp(name, &op)) {
      throw Napi::TypeError::New(env, "Expected one of " + opNames() + " for " + what +
                                          (value.IsString() ? " but received '" + name + "'" : ""));
    }
    return op;
  };
  OpId familyOp = kOpAdamw;
  if (info[0].IsString()) {
    familyOp = readOp(info[0], "op");
    const size_t perTensor = opLayout(familyOp).arrayCount;
    if (arrayCount % perTensor != 0) {
      throw Napi::RangeError::New(env, "createPlan(): " + std::to_string(arrayCount) +
                                           " arrays is not a multiple of the " +
                                           std::to_string(perTensor) + " arrays of a '" +
                                           opLayout(familyOp).name + "' tensor");
    }
  } else {
    const Napi::Array names = info[0].As<Napi::Array>();
    const uint32_t tensorCount = names.Length();
    size_t needed = 0;
    for (uint32_t k = 0; k < tensorCount; ++k) {
      const OpId op = readOp(names.Get(k), "op[" + std::to_string(k) + "]");
      if (k == 0) familyOp = op;
      if (std::strcmp(opLayout(op).family, opLayout(familyOp).family) != 0) {
        throw Napi::RangeError::New(env, "createPlan(): op[" + std::to_string(k) + "] '" +
                                             opLayout(op).name + "' is not of the family '" +
                                             opLayout(familyOp).family + "' of op[0] '" +
                                             opLayout(familyOp).name + "'");
      }
      ops.push_back(op);
      needed += opLayout(op).arrayCount;
    }
    if (arrayCount != needed) {
      throw Napi::RangeError::New(env, "createPlan(): " + std::to_string(arrayCount) +
                                           " arrays but the " + std::to_string(tensorCount) +
                                           " tensors' ops need " + std::to_string(needed));
    }
  }
  const auto where = [&](size_t k, size_t a) {
    return "tensor " + std::to_string(k) + " " + opLayout(ops[k]).arrays[a];
  };
  // With one op for all, the per-tensor lists grow as the arrays are read (a sparse array of 2^32 -
  // 1 elements must not allocate for its 700 million tensors before the first hole is found).
  const bool oneOp = info[0].IsString();
  std::vector<size_t> firstArray{0};  // where tensor k's arrays start in `arrays`
  std::vector<Napi::Value> values;
  for (size_t k = 0; firstArray.back() < arrayCount; ++k) {
    if (oneOp) ops.push_back(familyOp);
    const OpLayout& layout = opLayout(ops[k]);
    firstArray.push_back(firstArray.back() + layout.arrayCount);
    for (size_t a = 0; a < layout.arrayCount; ++a) {
      Napi::Value value = arrays.Get(static_cast<uint32_t>(firstArray[k] + a));
      const bool optional = optionalEntry(layout, a) != nullptr;
      if (!value.IsTypedArray() && !(value.IsNull() && optional)) {
        // Not a typed array at all. Element types are checked in phase 2, where the grad dtypes
        // are known; a grad here can still be either.
        const std::string expected = layout.arrayTypes[a] == ArrayType::kGrad
                                         ? "Float32Array or Uint16Array"
                                         : expectedArrayName(layout.arrayTypes[a], kGradFloat32);
        throw Napi::TypeError::New(
            env, "Expected a " + expected + (optional ? " or null" : "") + " for " + where(k, a));
      }
      values.push_back(value);
    }
  }

  // Phase 2: the grad dtypes, shapes, pointers and lengths, taken after every JavaScript callback
  // has returned. From here to the end of the call no JavaScript runs.
  std::vector<GradDtype> gradDtypes(ops.size(), kGradFloat32);
  if (hasGradDtypes) {
    const Napi::Uint8Array dtypes = info[2].As<Napi::Uint8Array>();
    if (dtypes.ElementLength() != ops.size()) {
      throw Napi::RangeError::New(
          env, "createPlan(): gradDtypes has " + std::to_string(dtypes.ElementLength()) +
                   " elements but there are " + std::to_string(ops.size()) + " tensors");
    }
    for (size_t k = 0; k < ops.size(); ++k) {
      if (dtypes[k] >= kGradDtypeCount) {
        throw Napi::RangeError::New(env, "createPlan(): gradDtypes[" + std::to_string(k) + "] is " +
                                             std::to_string(dtypes[k]) +
                                             " but must be 0 (float32), 1 (bfloat16) or 2 "
                                             "(float16)");
      }
      gradDtypes[k] = static_cast<GradDtype>(dtypes[k]);
    }
  }
  const bool phased = opLayout(familyOp).passCount > 0;
  if (hasOffsets && info[4].As<Napi::Uint32Array>().ElementLength() != ops.size()) {
    throw Napi::RangeError::New(
        env, "createPlan(): elementOffsets has " +
                 std::to_string(info[4].As<Napi::Uint32Array>().ElementLength()) +
                 " elements but there are " + std::to_string(ops.size()) + " tensors");
  }
  std::vector<PhasedShape> shapes(ops.size(), PhasedShape{0, 0, 0});
  if (hasShapes) {
    const Napi::Uint32Array given = info[3].As<Napi::Uint32Array>();
    if (given.ElementLength() != 3 * ops.size()) {
      throw Napi::RangeError::New(
          env, "createPlan(): shapes has " + std::to_string(given.ElementLength()) +
                   " elements but " + std::to_string(ops.size()) + " tensors need " +
                   std::to_string(3 * ops.size()) + " (3 per tensor: [batches, R, C])");
    }
    for (size_t k = 0; k < ops.size(); ++k) {
      shapes[k] = PhasedShape{given[3 * k], given[3 * k + 1], given[3 * k + 2]};
      const bool factored = shapes[k].batches != 0 || shapes[k].rows != 0 || shapes[k].cols != 0;
      if (factored && !phased) {
        throw Napi::RangeError::New(
            env, "createPlan(): tensor " + std::to_string(k) + " has the shape " +
                     shapeText(shapes[k]) + " but '" + opLayout(ops[k]).name +
                     "' is not a factored op (its shapes must be [0, 0, 0])");
      }
    }
  }
  const auto isFactored = [&](size_t k) {
    return shapes[k].batches != 0 || shapes[k].rows != 0 || shapes[k].cols != 0;
  };
  // Why tensor k has or lacks its factored arrays, for the messages.
  const auto shapeReason = [&](size_t k) {
    if (!hasShapes)
      return std::string(" (no shapes: tensor ") + std::to_string(k) + " is unfactored)";
    return " (tensor " + std::to_string(k) + " is " + (isFactored(k) ? "factored" : "unfactored") +
           ": its shape is " + shapeText(shapes[k]) + ")";
  };
  JobList list;
  list.jobs.resize(ops.size());
  std::vector<uint32_t> tensorFlags(ops.size(), 0);
  std::vector<Span> spans;
  std::vector<std::pair<size_t, size_t>> spanNames;  // (tensor, array) of each span
  spans.reserve(arrayCount);
  spanNames.reserve(arrayCount);
  for (size_t k = 0; k < ops.size(); ++k) {
    const OpLayout& layout = opLayout(ops[k]);
    Job& job = list.jobs[k];
    job = Job{};
    job.op = ops[k];
    if (hasOffsets) job.elementOffset = info[4].As<Napi::Uint32Array>()[k];
    job.blockSize = static_cast<uint32_t>(layout.blockSize);
    job.gradDtype = gradDtypes[k];
    tensorFlags[k] = static_cast<uint32_t>(gradDtypes[k]) << layout.gradDtypeShift;
    for (size_t a = 0; a < layout.arrayCount; ++a) {
      const Napi::Value& value = values[firstArray[k] + a];
      const OpOptionalArray* entry = optionalEntry(layout, a);
      if (entry != nullptr && entry->shape != ShapePresence::kAny) {
        const bool wanted = belongsToShape(entry->shape, isFactored(k));
        if (wanted && value.IsNull()) {
          throw Napi::TypeError::New(
              env, "Expected a " +
                       std::string(expectedArrayName(layout.arrayTypes[a], gradDtypes[k])) +
                       " for " + where(k, a) + shapeReason(k) + " but received null");
        }
        if (!wanted && !value.IsNull()) {
          throw Napi::TypeError::New(env, "Expected null for " + where(k, a) + shapeReason(k) +
                                              " but received a typed array");
        }
      }
      if (value.IsNull()) continue;
      TypedView view{};
      const napi_typedarray_type expected = expectedArrayType(layout.arrayTypes[a], gradDtypes[k]);
      if (!typedView(env, value, &view) || view.type != expected) {
        const OpOptionalArray* optional = optionalEntry(layout, a);
        std::string message = "Expected a " +
                              std::string(expectedArrayName(layout.arrayTypes[a], gradDtypes[k])) +
                              (optional != nullptr ? " or null" : "") + " for " + where(k, a);
        if (layout.arrayTypes[a] == ArrayType::kGrad) {
          message +=
              " (gradDtypes[" + std::to_string(k) + "] is " + kGradDtypeNames[gradDtypes[k]] + ")";
        }
        throw Napi::TypeError::New(env, message);
      }
      if (a == 0) {
        job.length = view.length;
        const PhasedShape& shape = shapes[k];
        size_t product = 0;
        const bool overflow = __builtin_mul_overflow(shape.batches, shape.rows, &product) ||
                              __builtin_mul_overflow(product, shape.cols, &product);
        if (isFactored(k) && (overflow || product != job.length)) {
          throw Napi::RangeError::New(
              env, "createPlan(): tensor " + std::to_string(k) + " has the shape " +
                       shapeText(shape) + " (shapes[" + std::to_string(3 * k) + ".." +
                       std::to_string(3 * k + 2) + "]) whose product is not its param's length " +
                       std::to_string(job.length));
        }
      }
      const ArrayLength lengthKind = layout.arrayLengths[a];
      size_t needed = job.length;
      std::string unit;
      if (lengthKind == ArrayLength::kBlocks) {
        needed = (job.length + layout.blockSize - 1) / layout.blockSize;
        unit = " (one per block of " + std::to_string(layout.blockSize) + " elements of param)";
      } else if (lengthKind == ArrayLength::kRows) {
        needed = shapes[k].batches * shapes[k].rows;
        unit = " (batches * R of its shape " + shapeText(shapes[k]) + ")";
      } else if (lengthKind == ArrayLength::kCols) {
        needed = shapes[k].batches * shapes[k].cols;
        unit = " (batches * C of its shape " + shapeText(shapes[k]) + ")";
      }
      if (view.length != needed) {
        throw Napi::RangeError::New(env, where(k, a) + " has " + std::to_string(view.length) +
                                             " elements but needs " + std::to_string(needed) +
                                             unit);
      }
      job.arrays[a] = view.length == 0 ? static_cast<void*>(gEmpty) : view.data;
      job.arrayBytes[a] = view.bytes;
      const OpOptionalArray* optional = optionalEntry(layout, a);
      if (optional != nullptr && optional->perTensor) tensorFlags[k] |= optional->flag;
      spans.push_back(spanOf(view.data, view.bytes, spans.size()));
      spanNames.emplace_back(k, a);
    }
  }
  size_t first = 0, second = 0;
  if (findOverlap(std::move(spans), &first, &second)) {
    throw Napi::RangeError::New(
        env, where(spanNames[first].first, spanNames[first].second) + " and " +
                 where(spanNames[second].first, spanNames[second].second) + " overlap in memory");
  }

  auto* handle = new PlanHandle{
      std::make_unique<Plan>(familyOp, std::move(list), std::move(tensorFlags),
                             phased ? std::move(shapes) : std::vector<PhasedShape>{}),
      {}};
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
  if (info.Length() < 5 || info.Length() > 7) {
    throw Napi::TypeError::New(env,
                               "runPlan(plan, scalars: Float64Array, flags: Uint32Array, "
                               "tensorSet: Uint32Array, threads: number, control?: Float64Array, "
                               "tensorSeeds?: Uint32Array)");
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
  if (info.Length() == 7 && !info[6].IsUndefined()) {
    args.run.tensorSeeds = typedArrayData<const uint32_t>(env, info[6], napi_uint32_array,
                                                          "tensorSeeds must be a Uint32Array",
                                                          &args.run.tensorSeedCount);
  }
  args.fused = info.Length() >= 6 && !info[5].IsUndefined();
  if (args.fused) {
    size_t length = 0;
    const double* control = typedArrayData<const double>(
        env, info[5], napi_float64_array, "control must be a Float64Array of 8 elements", &length);
    if (length != kControlLength) {
      throw Napi::TypeError::New(env, "runPlan(): control must be a Float64Array of " +
                                          std::to_string(kControlLength) + " elements");
    }
    const double options = control[kControlOptions];
    if (options == kControlOptionGivenGradFactor) {
      // The caller's factor; nothing measured, so the other inputs are not read.
      const double gradFactor = control[kControlGradFactor];
      if (!std::isfinite(gradFactor)) {
        throw Napi::RangeError::New(
            env, "runPlan(): control[" + std::to_string(kControlGradFactor) +
                     "] (gradFactor) must be a finite number with optionGivenGradFactor but is " +
                     Napi::Number::New(env, gradFactor).ToString().Utf8Value());
      }
      args.request.givenGradFactor = true;
      args.request.gradFactor = gradFactor;
    } else {
      const double maxNorm = control[kControlMaxNorm];
      const double gradScale = control[kControlGradScale];
      constexpr unsigned kAllOptions = kControlOptionMeasureNorm | kControlOptionSkipNonFinite;
      if (!(maxNorm >= 0) || !(gradScale > 0 && std::isfinite(gradScale)) ||
          !(options >= 0 && options <= kAllOptions && options == std::floor(options))) {
        throw Napi::RangeError::New(
            env,
            "runPlan(): control needs maxNorm >= 0, a finite gradScale > 0 and options in 0.." +
                std::to_string(kAllOptions) + ", or options " +
                std::to_string(kControlOptionGivenGradFactor) +
                " (optionGivenGradFactor, alone) and a finite gradFactor");
      }
      const unsigned bits = static_cast<unsigned>(options);
      args.request = TrainStepRequest{maxNorm, gradScale, (bits & kControlOptionMeasureNorm) != 0,
                                      (bits & kControlOptionSkipNonFinite) != 0};
    }
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

// findOverlap(arrays: ArrayBufferView[]): [i, j] with i < j for two arrays that share a byte, or
// null. lib/ uses it to name the culprits; createPlan runs the same check itself.
Napi::Value FindOverlap(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsArray()) {
    throw Napi::TypeError::New(env, "findOverlap(arrays: ArrayBufferView[])");
  }
  // Every element first, then the pointers: Get() can run JavaScript, which could detach a buffer.
  const Napi::Array arrays = info[0].As<Napi::Array>();
  std::vector<Napi::Value> values;
  for (uint32_t i = 0; i < arrays.Length(); ++i) {
    Napi::Value value = arrays.Get(i);
    if (!value.IsTypedArray() && !value.IsDataView()) {
      throw Napi::TypeError::New(env, "Expected an ArrayBufferView for array " + std::to_string(i));
    }
    values.push_back(value);
  }
  std::vector<Span> spans;
  spans.reserve(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    TypedView view{};
    if (!typedView(env, values[i], &view)) {
      size_t bytes = 0;
      void* data = nullptr;
      NAPI_THROW_IF_FAILED(
          env, napi_get_dataview_info(env, values[i], &bytes, &data, nullptr, nullptr), env.Null());
      view.data = data;
      view.bytes = bytes;
    }
    spans.push_back(spanOf(view.data, view.bytes, i));
  }
  size_t first = 0, second = 0;
  if (!findOverlap(std::move(spans), &first, &second)) return env.Null();
  Napi::Array pair = Napi::Array::New(env, 2);
  pair.Set(0u, Napi::Number::New(env, static_cast<double>(first)));
  pair.Set(1u, Napi::Number::New(env, static_cast<double>(second)));
  return pair;
}

// gradNorm(grads: (Float32Array | Uint16Array)[], threads, gradDtypes?: Uint8Array): the L2 norm
// of all of them (bf16 and fp16 ones widened exactly), from the canonical sum of squares
// (grad-norm.h): bitwise the same on every ISA and thread count.
Napi::Value GradNorm(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const bool hasGradDtypes = info.Length() == 3 && !info[2].IsUndefined();
  if (info.Length() < 2 || info.Length() > 3 || !info[0].IsArray() || !info[1].IsNumber() ||
      (hasGradDtypes && !(info[2].IsTypedArray() &&
                          info[2].As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array))) {
    throw Napi::TypeError::New(env,
                               "gradNorm(grads: (Float32Array | Uint16Array)[], threads: number, "
                               "gradDtypes?: Uint8Array)");
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
    if (!value.IsTypedArray()) {
      throw Napi::TypeError::New(
          env, "Expected a Float32Array or Uint16Array for grads[" + std::to_string(i) + "]");
    }
    values.push_back(value);
  }
  std::vector<GradDtype> dtypes(values.size(), kGradFloat32);
  if (hasGradDtypes) {
    const Napi::Uint8Array given = info[2].As<Napi::Uint8Array>();
    if (given.ElementLength() != values.size()) {
      throw Napi::RangeError::New(
          env, "gradNorm(): gradDtypes has " + std::to_string(given.ElementLength()) +
                   " elements but there are " + std::to_string(values.size()) + " grads");
    }
    for (size_t i = 0; i < values.size(); ++i) {
      if (given[i] >= kGradDtypeCount) {
        throw Napi::RangeError::New(env, "gradNorm(): gradDtypes[" + std::to_string(i) + "] is " +
                                             std::to_string(given[i]) +
                                             " but must be 0 (float32), 1 (bfloat16) or 2 "
                                             "(float16)");
      }
      dtypes[i] = static_cast<GradDtype>(given[i]);
    }
  }
  std::vector<GradSpan> grads;
  grads.reserve(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    TypedView view{};
    const napi_typedarray_type expected =
        dtypes[i] == kGradFloat32 ? napi_float32_array : napi_uint16_array;
    if (!typedView(env, values[i], &view) || view.type != expected) {
      throw Napi::TypeError::New(
          env, std::string("Expected a ") +
                   (dtypes[i] == kGradFloat32 ? "Float32Array" : "Uint16Array") + " for grads[" +
                   std::to_string(i) + "] (gradDtypes[" + std::to_string(i) + "] is " +
                   kGradDtypeNames[dtypes[i]] + ")");
    }
    grads.push_back(GradSpan{view.data, view.length, dtypes[i]});
  }
  const double sumSquares = sumOfSquares(grads, activeIsa().kernels->sumSquares,
                                         static_cast<unsigned>(requestedThreads), nullptr);
  return Napi::Number::New(env, std::sqrt(sumSquares));
}

const char* arrayTypeName(ArrayType type) {
  switch (type) {
    case ArrayType::kFloat32:
      return "float32";
    case ArrayType::kBfloat16:
      return "bfloat16";
    case ArrayType::kUint8:
      return "uint8";
    case ArrayType::kGrad:
      return "grad";
  }
  return "";
}

const char* arrayLengthName(ArrayLength length) {
  switch (length) {
    case ArrayLength::kParam:
      return "param";
    case ArrayLength::kBlocks:
      return "blocks";
    case ArrayLength::kRows:
      return "rows";
    case ArrayLength::kCols:
      return "cols";
  }
  return "";
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
  for (unsigned i = 0; i < kAllOpCount; ++i) {
    const OpLayout& layout = opLayout(static_cast<OpId>(i));
    const auto flagName = [&](uint32_t bit) {
      for (size_t f = 0; f < layout.flagCount; ++f) {
        if (layout.flags[f].bit == bit) return layout.flags[f].name;
      }
      return "";
    };
    Napi::Object op = Napi::Object::New(env);
    op.Set("arrays", Frozen(env, NamesToArray(env, layout.arrays, layout.arrayCount)));
    std::vector<const char*> types;
    std::vector<const char*> lengths;
    for (size_t a = 0; a < layout.arrayCount; ++a) {
      types.push_back(arrayTypeName(layout.arrayTypes[a]));
      lengths.push_back(arrayLengthName(layout.arrayLengths[a]));
    }
    op.Set("arrayTypes", Frozen(env, NamesToArray(env, types.data(), types.size())));
    op.Set("arrayLengths", Frozen(env, NamesToArray(env, lengths.data(), lengths.size())));
    op.Set("blockSize", Napi::Number::New(env, static_cast<double>(layout.blockSize)));
    op.Set("family", Napi::String::New(env, layout.family));
    Napi::Object optional = Napi::Object::New(env);
    for (size_t o = 0; o < layout.optionalCount; ++o) {
      const OpOptionalArray& entry = layout.optionalArrays[o];
      // What decides the array's presence: the tensor's shape, the tensor, or a public flag.
      const char* presence = entry.shape == ShapePresence::kFactored     ? "factored"
                             : entry.shape == ShapePresence::kUnfactored ? "unfactored"
                             : entry.perTensor                           ? "tensor"
                                                                         : flagName(entry.flag);
      optional.Set(layout.arrays[entry.array], presence);
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

// native.dynamicMaps: the blockwise8 codes' values (native/ops/blockwise8-codes.h), copies (the
// kernels read their own tables), in a frozen object.
Napi::Object DynamicMapsObject(const Napi::Env& env) {
  Napi::Object maps = Napi::Object::New(env);
  const auto copy = [&](const float* values) {
    Napi::Float32Array array = Napi::Float32Array::New(env, 256);
    std::memcpy(array.Data(), values, 256 * sizeof(float));
    return array;
  };
  maps.Set("signed", copy(kSignedDynamicMap));
  maps.Set("unsigned", copy(kUnsignedDynamicMap));
  return Frozen(env, maps);
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
  exports.Set("dynamicMaps", DynamicMapsObject(env));
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
