// The fused step's `control` array (native/train-step.h), declared once: native.control exports
// these indices and bits to lib/ as data. A Float64Array of kControlLength elements that lib/ fills
// with the request and the step fills with its result.
#pragma once

#include <cstddef>

namespace simd_adamw {

// X(name, index): the exported name is the name with a lower-case first letter.
// clang-format off
#define SIMD_ADAMW_FOREACH_CONTROL(X)                                                          \
  X(MaxNorm, 0)          /* in: clip to this norm, or +Inf */                                  \
  X(GradScale, 1)        /* in: finite, > 0 */                                                 \
  X(Options, 2)          /* in: the option bits below */                                       \
  X(GradNorm, 3)         /* out: norm of the unscaled gradients, NaN if not measured */        \
  X(GradFactor, 4)       /* out: what each gradient was multiplied by (float32); in: the */    \
                         /* factor to use, a finite double, with optionGivenGradFactor */      \
  X(Skipped, 5)          /* out: 1 if nothing changed */                                       \
  X(Clipped, 6)          /* out: 1 if clipped */                                               \
  X(NonFiniteTensor, 7)  /* out: first tensor with a NaN/Inf gradient, or -1 */                \
  X(Length, 8)           /* the array's length */                                              \
  X(OptionMeasureNorm, 1)    /* options bit: measure the norm even without clipping/skipping */ \
  X(OptionSkipNonFinite, 2)  /* options bit: if any gradient is NaN or Inf, change nothing */     \
  X(OptionGivenGradFactor, 4) /* options bit: measure nothing, use float(control[GradFactor]) */
// clang-format on

enum Control : size_t {
#define SIMD_ADAMW_CONTROL_ENUM(name, value) kControl##name = value,
  SIMD_ADAMW_FOREACH_CONTROL(SIMD_ADAMW_CONTROL_ENUM)
#undef SIMD_ADAMW_CONTROL_ENUM
};

}  // namespace simd_adamw
