// What an op is, to everything outside its algorithm file: a layout (what native.ops exports to
// lib/, declared once in the op's own header) and its kernels behind function-pointer types (only
// pointers, lengths and floats cross the dispatch boundary, never vector types). An op is either
// elementwise (one kernel over element ranges) or phased (passes over fixed chunks of each tensor
// with a per-tensor step between them, for the reductions of Adafactor and CAME: native/ops/
// phased.h).
#pragma once

#include <cstddef>
#include <cstdint>

namespace simd_adamw {

// The most arrays one tensor of any op has.
constexpr size_t kMaxArraysPerTensor = 10;

struct OpFlag {
  const char* name;
  uint32_t bit;
};

// What an array holds. kGrad is float32 or 16-bit (bf16 or fp16 bits), per tensor: see GradDtype.
enum class ArrayType : uint8_t { kFloat32, kBfloat16, kUint8, kGrad };
// How long an array is: the param's length, or one element per block of blockSize elements
// (ceil(length / blockSize): the per-block absmax of the 8-bit state), or, for a factored tensor of
// shape [batches, R, C] (createPlan's shapes), one per row (batches * R) or per column
// (batches * C): a factored second moment.
enum class ArrayLength : uint8_t { kParam, kBlocks, kRows, kCols };

// A tensor's gradient element type (createPlan's gradDtypes): the plan puts it into each job's
// flags at the op's gradDtypeShift, two bits, so the kernel widens it in a branch-free loop.
enum GradDtype : uint8_t { kGradFloat32 = 0, kGradBfloat16 = 1, kGradFloat16 = 2, kGradDtypeCount };

constexpr size_t elementBytes(ArrayType type, GradDtype grad) {
  return type == ArrayType::kFloat32    ? 4
         : type == ArrayType::kBfloat16 ? 2
         : type == ArrayType::kUint8    ? 1
         : grad == kGradFloat32         ? 4
                                        : 2;
}

// Which tensors an array belongs to by their shape (createPlan's shapes): any, only factored ones
// (a shape [batches, R, C] other than [0, 0, 0]) or only unfactored ones.
enum class ShapePresence : uint8_t { kAny, kFactored, kUnfactored };

// An array that may be null. With perTensor false it is needed exactly when `flag` (a public flag)
// is set in a run's flags; with perTensor true each tensor has it or not, fixed by createPlan, and
// `flag` is an internal bit the plan sets in the tensor's job flags when the array is present (0:
// none). With `shape` other than kAny (and perTensor true) the tensor's shape decides: the array
// must be given exactly when the shape is of that kind.
struct OpOptionalArray {
  size_t array;  // index into arrays
  uint32_t flag;
  bool perTensor;
  ShapePresence shape = ShapePresence::kAny;
};

// An op's layout. arrays[0] is always "param" and arrays[1] "grad" (what the fused step's norm,
// skip, clip and unscale read). The kernel receives scalarCount floats and then the gradient factor
// (used only with scaleGradFlag, which is internal: it is not one of `flags`, and lib/ may not set
// it). Ops of one family share scalars and flags, so one plan may run a different op per tensor.
struct OpLayout {
  const char* name;
  const char* family;
  const char* const* arrays;
  const ArrayType* arrayTypes;
  const ArrayLength* arrayLengths;
  size_t arrayCount;
  size_t blockSize;  // thread parts of a tensor start at multiples of it (1: anywhere)
  const OpOptionalArray* optionalArrays;
  size_t optionalCount;
  const char* const* scalars;
  size_t scalarCount;
  const OpFlag* flags;
  size_t flagCount;
  uint32_t publicFlags;     // the OR of flags[].bit
  uint32_t scaleGradFlag;   // g *= gradFactor before anything else (the fused clip/unscale)
  uint32_t negateGradFlag;  // a public flag the plan applies as a negative gradFactor (maximize)
  uint32_t gradDtypeShift;  // the GradDtype's two bits in the job flags start here
  uint32_t seededFlag;      // the public flag that needs a per-tensor seed (0: none)
  uint32_t kernelFlags;     // every bit the kernel's instantiations depend on
  // Phased ops only (passCount 0: elementwise): how many passes, and which of them a factored and
  // an unfactored tensor take part in (bit p: pass p). See native/ops/phased.h.
  unsigned passCount = 0;
  uint32_t factoredPasses = 0;
  uint32_t unfactoredPasses = 0;
};

// One tensor's part of a pass: its arrays (in the op's order, element types per the op's
// arrayTypes; a missing optional array is null), its length, its scalars (the op's scalarCount
// floats, then the gradient factor), its flags (public and internal) and its seed (the stochastic
// rounding key of this tensor for this step).
struct Job {
  void* arrays[kMaxArraysPerTensor];
  size_t arrayBytes[kMaxArraysPerTensor];  // each array's size, for the runner's prefetch
  size_t length;
  const float* scalars;
  uint32_t flags;
  uint32_t seed;
  // Where this job's element 0 is in its tensor: its random bits are those of element
  // elementOffset + i (a ZeRO-1 rank steps a range of a tensor, lib/distributed/zero.ts).
  uint32_t elementOffset;
  uint32_t op;         // OpId: which kernel of the ISA's table runs it
  uint32_t blockSize;  // the op's
  GradDtype gradDtype;
};

// Applies the op to elements [begin, end) of `job` (begin and end multiples of the op's blockSize,
// or end == length). Blocks are independent, so a caller may split a tensor into ranges (for
// threads) and get bitwise the same result as one call.
using ElementwiseKernel = void (*)(const Job& job, size_t begin, size_t end);

// What a kernel is called with for a run's `flags` (public ones plus scaleGradFlag) and gradient
// factor: the negateGradFlag (maximize) becomes scaleGradFlag with the factor negated (-1 without
// scaling). The plan does the same per scalar set (native/plan.cc); the C++ tests call this.
inline void toKernelFlags(const OpLayout& layout, uint32_t* flags, float* gradFactor) {
  if ((*flags & layout.negateGradFlag) == 0) return;
  *gradFactor = (*flags & layout.scaleGradFlag) != 0 ? -*gradFactor : -1.0f;
  *flags |= layout.scaleGradFlag;
}

template <class T, size_t N>
constexpr size_t countOf(const T (&)[N]) {
  return N;
}

// Builds an OpLayout from an op's descriptor struct (see native/ops/adamw.h for the shape).
template <class Op>
constexpr OpLayout layoutOf() {
  uint32_t publicFlags = 0;
  for (const OpFlag& flag : Op::kFlags) publicFlags |= flag.bit;
  static_assert(countOf(Op::kArrays) == countOf(Op::kArrayTypes), "one type per array");
  static_assert(countOf(Op::kArrays) == countOf(Op::kArrayLengths), "one length per array");
  static_assert(countOf(Op::kArrays) <= kMaxArraysPerTensor, "kMaxArraysPerTensor is enough");
  return OpLayout{Op::kName,           Op::kFamily,           Op::kArrays,
                  Op::kArrayTypes,     Op::kArrayLengths,     countOf(Op::kArrays),
                  Op::kBlockSize,      Op::kOptionalArrays,   countOf(Op::kOptionalArrays),
                  Op::kScalars,        countOf(Op::kScalars), Op::kFlags,
                  countOf(Op::kFlags), publicFlags,           Op::kScaleGrad,
                  Op::kNegateGrad,     Op::kGradDtypeShift,   Op::kSeededFlag,
                  Op::kKernelFlags};
}

}  // namespace simd_adamw
