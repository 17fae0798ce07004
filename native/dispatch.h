// Runtime choice of the kernels (every op and the gradient norm's sum of squares, always of one
// ISA): which instruction sets this binary has, which this CPU (and its OS) can run, and which one
// is in use. Picked once at load (best available), changeable by name for tests and benchmarks.
// The table is generated from native/simd/isa-list.h and native/ops/op-list.h.
#pragma once

#include <string>
#include <vector>

#include "ops/op-list.h"
#include "ops/op.h"
#include "ops/phased.h"
#include "ops/sum-squares.h"
#include "simd/isa-list.h"

namespace simd_adamw {

// One ISA's kernels, defined by native/kernels/kernels.cc compiled for that ISA.
struct IsaKernels {
  ElementwiseKernel ops[kOpCount];               // indexed by OpId
  PhasedKernels phased[kPhasedOpCount];          // indexed by OpId - kOpCount
  SumSquaresKernel sumSquares[kGradDtypeCount];  // the gradient norm's block sums, by GradDtype
};

struct IsaInfo {
  const char* name;  // the public name: "avx512", "avx2", "sse2", "neon", "scalar"
  const IsaKernels* kernels;
  bool (*supported)();  // true when this CPU and OS can run the kernels
};

// Every ISA compiled into this binary, best first (the last is always scalar).
const std::vector<IsaInfo>& compiledIsas();

// The names of the compiled ISAs this machine can run, best first.
std::vector<std::string> availableIsaNames();

// The ISA in use. Starts as the best available one.
const IsaInfo& activeIsa();

// Switches to the named ISA. Returns false (and changes nothing) if the name is unknown or the CPU
// cannot run it.
bool setActiveIsa(const std::string& name);

// Every op's layout, indexed by OpId (kAllOpCount of them: what native.ops exports).
const OpLayout& opLayout(OpId op);

}  // namespace simd_adamw
