// Runtime choice of the kernels (the AdamW update and the gradient norm's sum of squares, always of
// one ISA): which instruction sets this binary has, which this CPU (and its OS) can run, and which
// one is in use. Picked once at load (best available), changeable by name for tests and benchmarks.
// Adding an ISA is its two kernel files plus one row in dispatch.cc.
#pragma once

#include <string>
#include <vector>

#include "adamw.h"
#include "grad-norm.h"

namespace simd_adamw {

struct IsaInfo {
  const char* name;  // the public name: "avx512", "avx2", "sse2", "neon", "scalar"
  AdamwKernel kernel;
  SumSquaresKernel sumSquares;  // one block of the gradient norm (grad-norm.h)
  bool (*supported)();          // true when this CPU and OS can run the kernel
};

// Every kernel compiled into this binary, best first.
const std::vector<IsaInfo>& compiledIsas();

// The names of the compiled kernels this machine can run, best first.
std::vector<std::string> availableIsaNames();

// The kernel in use. Starts as the best available one.
const IsaInfo& activeIsa();

// Switches to the named kernel. Returns false (and changes nothing) if the name is unknown or the
// CPU cannot run it.
bool setActiveIsa(const std::string& name);

}  // namespace simd_adamw
