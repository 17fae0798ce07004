// The one list of elementwise ops. The dispatch table (native/dispatch.cc), the kernels translation
// unit compiled per ISA (native/kernels/kernels.cc), native.ops (native/binding.cc) and the C++
// tests read it.
//
//   X(id, Descriptor)
//
//   id          the op's index in every ISA's table is kOp<id> (enum OpId below)
//   Descriptor  the op's descriptor struct (name, family, arrays with their types and lengths,
//               scalars, flags, the flag bits its kernel depends on) with its algorithm,
//               `template <class F32, uint32_t kFlags> static void run(job, begin, end)`, written
//               over the vector layer (see native/ops/adamw.h)
//
// Adding an elementwise op is its header (descriptor + algorithm), its #include and one row here.
//
// Phased ops (reductions between passes: native/ops/phased.h) have their own list below,
// SIMD_ADAMW_FOREACH_PHASED_OP, rows of the same shape; a descriptor there has
// `template <class F32, GradDtype> static void chunks(job, work, pass, begin, end)` and
// `template <class F32> static void between(job, work, pass)` instead of run.
#pragma once

#include "adamw-bfloat16.h"
#include "adamw-blockwise8.h"
#include "adamw.h"
#include "lion-bfloat16.h"
#include "lion-blockwise8.h"
#include "lion.h"

// clang-format off
#define SIMD_ADAMW_FOREACH_OP(X) \
  X(Adamw, AdamwOp) \
  X(AdamwBfloat16, AdamwBfloat16Op) \
  X(AdamwBlockwise8, AdamwBlockwise8Op) \
  X(Lion, LionOp) \
  X(LionBfloat16, LionBfloat16Op) \
  X(LionBlockwise8, LionBlockwise8Op)
// clang-format on

namespace simd_adamw {

enum OpId : unsigned {
#define SIMD_ADAMW_OP_ID(id, descriptor) kOp##id,
  SIMD_ADAMW_FOREACH_OP(SIMD_ADAMW_OP_ID)
#undef SIMD_ADAMW_OP_ID
      kOpCount
};

}  // namespace simd_adamw

// The phased ops. Their OpIds follow the elementwise ones (kOp<id> = kOpCount + its index), so one
// id names any op (opLayout, native.ops, a plan's jobs); every ISA's table has them in
// IsaKernels::phased, by index.
#include "adafactor.h"
#include "came.h"

// clang-format off
#define SIMD_ADAMW_FOREACH_PHASED_OP(X) \
  X(Adafactor, AdafactorOp) \
  X(Came, CameOp)
// clang-format on

namespace simd_adamw {

enum PhasedOpIndex : unsigned {
#define SIMD_ADAMW_PHASED_OP_INDEX(id, descriptor) kPhased##id,
  SIMD_ADAMW_FOREACH_PHASED_OP(SIMD_ADAMW_PHASED_OP_INDEX)
#undef SIMD_ADAMW_PHASED_OP_INDEX
      kPhasedOpCount
};

#define SIMD_ADAMW_PHASED_OP_ID(id, descriptor) \
  constexpr OpId kOp##id = static_cast<OpId>(kOpCount + kPhased##id);
SIMD_ADAMW_FOREACH_PHASED_OP(SIMD_ADAMW_PHASED_OP_ID)
#undef SIMD_ADAMW_PHASED_OP_ID

// Every op, elementwise and phased.
constexpr unsigned kAllOpCount = kOpCount + kPhasedOpCount;

}  // namespace simd_adamw
