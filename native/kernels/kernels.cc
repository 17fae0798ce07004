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

// Turns a job's runtime flags into one of the op's branch-free loop instantiations, indexed by the
// flags (the public ones and the internal scaleGrad bit, which must form a contiguous mask).
template <class Op, class Sequence>
struct FlagTable;
template <class Op, uint32_t... kFlags>
struct FlagTable<Op, std::integer_sequence<uint32_t, kFlags...>> {
  static constexpr ElementwiseKernel kRuns[] = {&Op::template run<F32, kFlags>...};
};

template <class Op>
void elementwise(const Job& job, size_t begin, size_t end) {
  constexpr OpLayout kLayout = layoutOf<Op>();
  constexpr uint32_t kAll = kLayout.publicFlags | kLayout.scaleGradFlag;
  static_assert((kAll & (kAll + 1)) == 0, "an op's flags are the low bits");
  using Table = FlagTable<Op, std::make_integer_sequence<uint32_t, kAll + 1>>;
  Table::kRuns[job.flags & kAll](job, begin, end);
}

}  // namespace

extern const IsaKernels SIMD_ADAMW_CAT(kIsaKernels_, SIMD_ADAMW_ISA);
const IsaKernels SIMD_ADAMW_CAT(kIsaKernels_, SIMD_ADAMW_ISA) = {
    {
#define SIMD_ADAMW_OP_KERNEL(id, descriptor) &elementwise<descriptor>,
        SIMD_ADAMW_FOREACH_OP(SIMD_ADAMW_OP_KERNEL)
#undef SIMD_ADAMW_OP_KERNEL
    },
    &sumSquaresBlocks<F64>,
};

}  // namespace simd_adamw
