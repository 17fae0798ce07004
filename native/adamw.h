// The ISA-independent face of the AdamW kernels: what crosses the dispatch boundary.
//
// Only pointers, lengths and plain floats cross it, never vector types, so each ISA's kernel can
// live in its own file, compiled with its own flags, behind one function-pointer type.
//
// lib/ computes every scalar in double precision from the user's hyperparameters (as PyTorch does
// in Python) and rounds the results to float32 once; the kernels never derive one scalar from
// another. That keeps `1 - beta2` exact for beta2 = 0.9999, and keeps all ISA paths on the same
// float32 inputs.
#pragma once

#include <cstddef>
#include <cstdint>

namespace simd_adamw {

// One tensor's arrays. All have `length` elements and none overlap; maxExpAvgSq is null unless
// amsgrad is on.
struct AdamwTensor {
  float* param;
  const float* grad;
  float* expAvg;       // m: running mean of gradients
  float* expAvgSq;     // v: running mean of squared gradients
  float* maxExpAvgSq;  // amsgrad's running max of v, or nullptr
  size_t length;
};

// The per-step coefficients, already rounded to float32.
//
// The update is PyTorch's
//   p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
// with numerator and denominator multiplied by sqrt(bc2), which is the same quantity with one
// division and no multiply per element in the denominator:
//   p += negStepSize * (m / (sqrt(v) + epsHat)),
//   negStepSize = -lr * sqrt(bc2) / bc1,  epsHat = eps * sqrt(bc2).
struct AdamwScalars {
  float beta1;
  float oneMinusBeta1;
  float beta2;
  float oneMinusBeta2;
  float decay;        // AdamW's decoupled decay factor 1 - lr * weightDecay (1 for Adam)
  float l2;           // Adam's coupled weight decay (g += l2 * p); used only with kAdamwCoupled
  float negStepSize;  // -lr * sqrt(bc2) / bc1
  float epsHat;       // eps * sqrt(bc2)
  // Multiplies the gradient before anything else, with kAdamwScaleGrad: the fused step's
  // clipCoef / gradScale (native/train-step.h), so clipping and loss-scale unscaling cost no pass
  // of their own. Not one of the per-tensor scalars lib/ sends; the same for every tensor of a
  // step.
  float gradFactor = 1.0f;
};

// Variant bits; each combination is a separate instantiation of the loop, so the hot loop has no
// branches.
enum AdamwFlags : uint32_t {
  kAdamwAmsgrad = 1u << 0,    // keep and use maxExpAvgSq
  kAdamwMaximize = 1u << 1,   // step along +g
  kAdamwCoupled = 1u << 2,    // Adam with L2: g += l2 * p before the moments (no decoupled decay)
  kAdamwScaleGrad = 1u << 3,  // g *= gradFactor first, before maximize and L2 (gradients unchanged)
  kAdamwAllFlags = (1u << 4) - 1,
};

// Applies the step to elements [begin, end) of `tensor`. Elements are independent, so a caller may
// split a tensor into ranges (for threads) and get bitwise the same result as one call.
using AdamwKernel = void (*)(const AdamwTensor& tensor, const AdamwScalars& scalars, uint32_t flags,
                             size_t begin, size_t end);

// One kernel per instruction set, each defined in native/kernels/adamw-<isa>.cc.
void adamwScalar(const AdamwTensor&, const AdamwScalars&, uint32_t, size_t, size_t);
#if defined(SIMD_ADAMW_X86_64)
void adamwSse2(const AdamwTensor&, const AdamwScalars&, uint32_t, size_t, size_t);
void adamwAvx2(const AdamwTensor&, const AdamwScalars&, uint32_t, size_t, size_t);
void adamwAvx512f(const AdamwTensor&, const AdamwScalars&, uint32_t, size_t, size_t);
#endif
#if defined(SIMD_ADAMW_AARCH64)
void adamwNeon(const AdamwTensor&, const AdamwScalars&, uint32_t, size_t, size_t);
#endif

}  // namespace simd_adamw
