// The adamw op as the C++ tests drive it: one tensor's arrays and scalars as named structs, and a
// call of any ISA's adamw kernel through the generic Job the runner uses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../dispatch.h"
#include "../ops/adamw.h"

namespace simd_adamw {

// One tensor's arrays. All have `length` elements and none overlap; maxExpAvgSq is null unless
// amsgrad is on.
struct AdamwTensor {
  float* param;
  const float* grad;
  float* expAvg;
  float* expAvgSq;
  float* maxExpAvgSq;
  size_t length;
};

// The op's scalars in AdamwOp::Scalar order, then the gradient factor.
struct AdamwScalars {
  float beta1;
  float oneMinusBeta1;
  float beta2;
  float oneMinusBeta2;
  float decay;
  float l2;
  float negStepSize;
  float epsHat;
  float gradFactor = 1.0f;
};
static_assert(sizeof(AdamwScalars) == (AdamwOp::kScalarCount + 1) * sizeof(float),
              "AdamwScalars is the kernel's scalar layout");

enum AdamwFlags : uint32_t {
  kAdamwAmsgrad = AdamwOp::kAmsgrad,
  kAdamwMaximize = AdamwOp::kMaximize,
  kAdamwCoupled = AdamwOp::kCoupled,
  kAdamwScaleGrad = AdamwOp::kScaleGrad,
  // Every public flag that changes adamw, and the scale bit (stochasticRounding, bit 3, does not).
  kAdamwAllFlags = AdamwOp::kAmsgrad | AdamwOp::kMaximize | AdamwOp::kCoupled | AdamwOp::kScaleGrad,
};

// The job of one tensor with kernel flags `flags` (maximize already turned into a negative factor
// by toKernelFlags; `s` is the kernel's copy).
inline Job adamwJob(const AdamwTensor& t, const AdamwScalars& s, uint32_t flags) {
  Job job{};
  job.arrays[AdamwOp::kParam] = t.param;
  job.arrays[AdamwOp::kGrad] = const_cast<float*>(t.grad);
  job.arrays[AdamwOp::kExpAvg] = t.expAvg;
  job.arrays[AdamwOp::kExpAvgSq] = t.expAvgSq;
  job.arrays[AdamwOp::kMaxExpAvgSq] = t.maxExpAvgSq;
  job.length = t.length;
  job.scalars = &s.beta1;
  job.flags = flags;
  job.op = kOpAdamw;
  job.blockSize = 1;
  return job;
}

// Elements [begin, end) of one tensor with `isa`'s adamw kernel, run with `flags` as a plan would.
inline void adamwWith(const IsaInfo& isa, const AdamwTensor& t, const AdamwScalars& s,
                      uint32_t flags, size_t begin, size_t end) {
  AdamwScalars kernelScalars = s;
  toKernelFlags(opLayout(kOpAdamw), &flags, &kernelScalars.gradFactor);
  isa.kernels->ops[kOpAdamw](adamwJob(t, kernelScalars, flags), begin, end);
}

inline bool isScalarIsa(const IsaInfo& isa) { return std::strcmp(isa.name, "scalar") == 0; }

inline const IsaInfo& scalarIsa() { return compiledIsas().back(); }

// The reference: the scalar ISA's kernel.
inline void adamwScalar(const AdamwTensor& t, const AdamwScalars& s, uint32_t flags, size_t begin,
                        size_t end) {
  adamwWith(scalarIsa(), t, s, flags, begin, end);
}

}  // namespace simd_adamw
