// The one list of instruction sets. Everything that needs to know which ISAs exist reads this list:
// the dispatch table (native/dispatch.cc), the build (CMakeLists.txt parses the rows below with a
// regex, so keep each row on one line, in this exact shape), the C++ tests and, through the build,
// the fuzz and cross-test scripts.
//
//   X(id, "public name", ARCH, "compile flags", supported)
//
//   id           the vector layer is native/simd/<id>.h; the kernels translation unit
//                (native/kernels/kernels.cc) is compiled once per row with -DSIMD_ADAMW_ISA=<id>
//   public name  what backend.isa / setIsa / SIMD_ADAMW_ISA use
//   ARCH         X86_64, AARCH64 or ANY: the row is built only for that target architecture
//   flags        the -m flags of that translation unit (never -march=native)
//   supported    a predicate in dispatch.cc: true when this CPU and its OS can run the ISA
//
// Rows are best first: dispatch picks the first supported one. Adding an ISA is its vector header
// plus one row here (and, for a new CPU feature, its predicate in dispatch.cc).
#pragma once

// clang-format off
#define SIMD_ADAMW_FOREACH_ISA(X) \
  X(avx512f, "avx512", X86_64, "-mavx512f", cpuHasAvx512f) \
  X(avx2, "avx2", X86_64, "-mavx2", cpuHasAvx2) \
  X(sse2, "sse2", X86_64, "", always) \
  X(neon, "neon", AARCH64, "", always) \
  X(scalar, "scalar", ANY, "", always)
// clang-format on

// SIMD_ADAMW_IF_<ARCH>(tokens): the tokens when building for ARCH, nothing otherwise.
#define SIMD_ADAMW_IF_ANY(...) __VA_ARGS__
#if defined(SIMD_ADAMW_X86_64)
#define SIMD_ADAMW_IF_X86_64(...) __VA_ARGS__
#else
#define SIMD_ADAMW_IF_X86_64(...)
#endif
#if defined(SIMD_ADAMW_AARCH64)
#define SIMD_ADAMW_IF_AARCH64(...) __VA_ARGS__
#else
#define SIMD_ADAMW_IF_AARCH64(...)
#endif

#define SIMD_ADAMW_CAT_(a, b) a##b
#define SIMD_ADAMW_CAT(a, b) SIMD_ADAMW_CAT_(a, b)
