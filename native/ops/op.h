// What an elementwise op is, to everything outside its algorithm file: a layout (what native.ops
// exports to lib/, declared once in the op's own header) and a kernel behind one function-pointer
// type (only pointers, lengths and floats cross the dispatch boundary, never vector types).
#pragma once

#include <cstddef>
#include <cstdint>

namespace simd_adamw {

// The most arrays one tensor of any op has.
constexpr size_t kMaxArraysPerTensor = 8;

struct OpFlag {
  const char* name;
  uint32_t bit;
};

// An array that may be null unless a flag is set.
struct OpOptionalArray {
  size_t array;   // index into arrays
  uint32_t flag;  // the flag that needs it
};

// An op's layout. arrays[0] is always "param" and arrays[1] "grad" (what the fused step's norm,
// skip, clip and unscale read). The kernel receives scalarCount floats and then the gradient factor
// (used only with scaleGradFlag, which is internal: it is not one of `flags`, and lib/ may not set
// it).
struct OpLayout {
  const char* name;
  const char* const* arrays;
  size_t arrayCount;
  const OpOptionalArray* optionalArrays;
  size_t optionalCount;
  const char* const* scalars;
  size_t scalarCount;
  const OpFlag* flags;
  size_t flagCount;
  uint32_t publicFlags;    // the OR of flags[].bit
  uint32_t scaleGradFlag;  // g *= gradFactor before anything else (the fused clip/unscale)
};

// One tensor's part of a pass: its arrays (in the op's order; a missing optional array is null),
// its length, its scalars (the op's scalarCount floats, then the gradient factor) and its flags.
struct Job {
  float* arrays[kMaxArraysPerTensor];
  size_t length;
  const float* scalars;
  uint32_t flags;
};

// Applies the op to elements [begin, end) of `job`. Elements are independent, so a caller may split
// a tensor into ranges (for threads) and get bitwise the same result as one call.
using ElementwiseKernel = void (*)(const Job& job, size_t begin, size_t end);

// Builds an OpLayout from an op's descriptor struct (see native/ops/adamw.h for the shape).
template <class Op>
constexpr OpLayout layoutOf() {
  uint32_t publicFlags = 0;
  for (const OpFlag& flag : Op::kFlags) publicFlags |= flag.bit;
  return OpLayout{Op::kName,
                  Op::kArrays,
                  sizeof(Op::kArrays) / sizeof(Op::kArrays[0]),
                  Op::kOptionalArrays,
                  sizeof(Op::kOptionalArrays) / sizeof(Op::kOptionalArrays[0]),
                  Op::kScalars,
                  sizeof(Op::kScalars) / sizeof(Op::kScalars[0]),
                  Op::kFlags,
                  sizeof(Op::kFlags) / sizeof(Op::kFlags[0]),
                  publicFlags,
                  Op::kScaleGrad};
}

}  // namespace simd_adamw
