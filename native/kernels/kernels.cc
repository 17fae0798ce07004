// Every op's kernel for one ISA. The build compiles this file once per row of native/simd/
// isa-list.h, with that ISA's -m flags, -DSIMD_ADAMW_ISA=<id> and -DSIMD_ADAMW_ISA_HEADER=
// "../simd/<id>.h" (Highway's foreach_target idea, without the library): the vector layer decides
// the instructions, the op headers (native/ops/op-list.h) the arithmetic, and this file only
// instantiates them and publishes the ISA's table, kIsaKernels_<id>, for native/dispatch.cc.
//
// Everything instantiated here has internal linkage (the vector types live in an anonymous
// namespace), so the AVX-512 copy of a function can never be linked in place of the SSE2 one.
#if !defined(SIMD_ADAMW_ISA) || !defined(SIMD_ADAMW_ISA_HEADER)
#error "compile kernels.cc with -DSIMD_ADAMW_ISA=<id> -DSIMD_ADAMW_ISA_HEADER=\"../simd/<id>.h\""
#endif

#include <cstdint>
#include <utility>

#include SIMD_ADAMW_ISA_HEADER
#include "../dispatch.h"
#include "../ops/op-list.h"
#include "../ops/sum-squares.h"

namespace simd_adamw {
namespace {

// Turns a job's runtime flags into one of the op's branch-free loop instantiations. Only the bits
// the op's kernel depends on (kKernelFlags: public flags it reads and internal ones the plan and
// the fused step set) select an instantiation: the flags are compressed to those bits, in order,
// and entry `index` of the table is the instantiation for the flags `index` expands to. A grad
// dtype field of 3 (no such dtype; the plan never sets it) maps to the float32 instantiation, so
// it costs a table entry but no code.
constexpr uint32_t expandFlags(uint32_t index, uint32_t mask) {
  uint32_t flags = 0;
  for (uint32_t bit = 1, next = 1; bit != 0 && next <= index; bit <<= 1) {
    if ((mask & bit) == 0) continue;
    if ((index & next) != 0) flags |= bit;
    next <<= 1;
  }
  return flags;
}

constexpr uint32_t compressFlags(uint32_t flags, uint32_t mask) {
  uint32_t index = 0;
  for (uint32_t bit = 1, next = 1; bit != 0 && bit <= mask; bit <<= 1) {
    if ((mask & bit) == 0) continue;
    if ((flags & bit) != 0) index |= next;
    next <<= 1;
  }
  return index;
}

template <class Op>
constexpr uint32_t instantiatedFlags(uint32_t index) {
  const uint32_t flags = expandFlags(index, Op::kKernelFlags);
  const bool noSuchDtype = (flags & Op::kGradDtypeMask) == Op::kGradDtypeMask;
  return noSuchDtype ? flags & ~Op::kGradDtypeMask : flags;
}

template <class Op, class Sequence>
struct FlagTable;
template <class Op, uint32_t... kIndex>
struct FlagTable<Op, std::integer_sequence<uint32_t, kIndex...>> {
  static constexpr ElementwiseKernel kRuns[] = {
      &Op::template run<F32, instantiatedFlags<Op>(kIndex)>...};
};

template <class Op>
void elementwise(const Job& job, size_t begin, size_t end) {
  constexpr uint32_t kBits = __builtin_popcount(Op::kKernelFlags);
  using Table = FlagTable<Op, std::make_integer_sequence<uint32_t, (1u << kBits)>>;
  Table::kRuns[compressFlags(job.flags, Op::kKernelFlags)](job, begin, end);
}

// A phased op's chunk kernel and its step between passes. The loops are instantiated once per ISA
// (only the gradient's widening is per dtype: StagedGrad in native/ops/phased.h); the rare flags
// are branches.
template <class Op>
void phasedChunks(const Job& job, PhasedWork& work, unsigned pass, size_t begin, size_t end) {
  Op::template chunks<F32, F64>(job, work, pass, begin, end);
}

template <class Op>
void phasedBetween(const Job& job, PhasedWork& work, unsigned pass) {
  Op::template between<F32>(job, work, pass);
}

}  // namespace

extern const IsaKernels SIMD_ADAMW_CAT(kIsaKernels_, SIMD_ADAMW_ISA);
const IsaKernels SIMD_ADAMW_CAT(kIsaKernels_, SIMD_ADAMW_ISA) = {
    {
#define SIMD_ADAMW_OP_KERNEL(id, descriptor) &elementwise<descriptor>,
        SIMD_ADAMW_FOREACH_OP(SIMD_ADAMW_OP_KERNEL)
#undef SIMD_ADAMW_OP_KERNEL
    },
    {
#define SIMD_ADAMW_PHASED_OP_KERNELS(id, descriptor) \
  {&phasedChunks<descriptor>, &phasedBetween<descriptor>},
        SIMD_ADAMW_FOREACH_PHASED_OP(SIMD_ADAMW_PHASED_OP_KERNELS)
#undef SIMD_ADAMW_PHASED_OP_KERNELS
    },
    {&sumSquaresBlocks<F64, kGradFloat32>, &sumSquaresBlocks<F64, kGradBfloat16>,
     &sumSquaresBlocks<F64, kGradFloat16>},
};

}  // namespace simd_adamw
