// The element loops every elementwise op's driver shares (native/ops/adamw*.h, lion*.h): the
// vector loop with its tail and software prefetch, and the blockwise8 ops' prefetch of the blocks
// ahead. Only loads, stores and prefetches are scheduled here; the arithmetic is the op's, so the
// same loop serves every family without changing a bit of its results.
#pragma once

#include <cstddef>
#include <cstdint>

#include "lanes.h"
#include "op.h"

namespace simd_adamw {
namespace {

// Software prefetch, for ranges larger than the caches. The hardware prefetcher alone keeps too
// few of the streams' lines in flight to saturate DRAM, so each stream is prefetched 512 elements
// ahead, once per 16 elements (a 64-byte line of float32; the narrower arrays are prefetched as
// often, which costs issue slots but no bandwidth). In a range that fits the caches it only costs
// issue slots, so it is used only for ranges of at least kPrefetchMinRange elements. Measured on
// the development machine (Zen 5, 1 thread, a C++ harness calling runElementwise, float32 state):
// a wash at 1M elements, 1.15-1.25x at 2M-8M; on 1,024 tensors of 1,024 elements (each range below
// the threshold, the whole step in L3) prefetching them all was 0.7-0.85x. Prefetching only moves
// data earlier; the arithmetic, and so every result bit, is unchanged.
constexpr size_t kElementsPerLine = 16;
constexpr size_t kPrefetchAhead = 512;
constexpr size_t kPrefetchMinRange = size_t{1} << 18;

template <class T>
inline void prefetchAhead(const T* p, size_t i) {
  if (p != nullptr) __builtin_prefetch(p + i + kPrefetchAhead);
}

// The element loop every driver shares: `vector(i, FullVector{})` for the whole vectors of
// [begin, end), then `vector(i, PartialVector{n})` for the n < kWidth elements left, with
// `prefetch(i)` once per line on long ranges. The tag picks the loads and stores (native/ops/
// lanes.h) at compile time, so the body and the tail share the arithmetic but not a branch. The
// prefetched addresses stay inside the arrays (forming a pointer past their end would be undefined
// behaviour): the prefetching part stops kPrefetchAhead + a line before the end.
//
// The scalar layer (the reference, run only where no SIMD layer is) skips the prefetching part:
// with one float per vector it would be sixteen more copies of the loop body in each of the ops'
// instantiations, for compile time and binary size rather than speed.
template <class F32, class Vector, class Prefetch>
inline void forEachVector(size_t begin, size_t end, Vector vector, Prefetch prefetch) {
  static_assert(kElementsPerLine % F32::kWidth == 0, "a line holds whole vectors");
  size_t i = begin;
  if constexpr (F32::kWidth > 1) {
    if (end - begin >= kPrefetchMinRange) {
      for (; end - i >= kPrefetchAhead + kElementsPerLine; i += kElementsPerLine) {
        prefetch(i);
        for (size_t v = 0; v < kElementsPerLine; v += F32::kWidth) vector(i + v, FullVector{});
      }
    }
  }
  for (; i + F32::kWidth <= end; i += F32::kWidth) vector(i, FullVector{});
  if (i < end) vector(i, PartialVector{end - i});
}

// forEachVector without the prefetching part, for short ranges (a blockwise8 block).
template <class F32, class Vector>
inline void forEachVectorShort(size_t begin, size_t end, Vector vector) {
  size_t i = begin;
  for (; i + F32::kWidth <= end; i += F32::kWidth) vector(i, FullVector{});
  if (i < end) vector(i, PartialVector{end - i});
}

// prefetchAhead for a gradient of dtype kGradDtype (4 or 2 bytes per element).
template <GradDtype kGradDtype>
inline void prefetchGradAhead(const void* grad, size_t i) {
  if (kGradDtype == kGradFloat32) {
    prefetchAhead(static_cast<const float*>(grad), i);
  } else {
    prefetchAhead(static_cast<const uint16_t*>(grad), i);
  }
}

// How many blocks ahead of the one being updated a blockwise8 op's block loop prefetches.
constexpr size_t kPrefetchBlocksAhead = 2;

// A blockwise8 op's prefetch, at the start of the block at `start` of a range ending at `end`: the
// block kPrefetchBlocksAhead on, a line at a time, while it is inside the range (the hardware
// prefetcher alone does not keep enough of the streams' lines in flight, as for forEachVector).
// `codes...` are the state tensors' code arrays (one byte per element); paramBf16 and any of them
// may be null (an array the tensor does not have).
template <GradDtype kGradDtype, size_t kBlock, class... Codes>
inline void prefetchBlockAhead(size_t start, size_t end, const float* param, const void* grad,
                               const uint16_t* paramBf16, const Codes*... codes) {
  const size_t ahead = start + kPrefetchBlocksAhead * kBlock;
  if (ahead + kBlock > end) return;
  for (size_t i = ahead; i < ahead + kBlock; i += kElementsPerLine) {
    __builtin_prefetch(param + i);
    __builtin_prefetch(static_cast<const char*>(grad) + i * (kGradDtype == kGradFloat32 ? 4 : 2));
    if (paramBf16 != nullptr) __builtin_prefetch(paramBf16 + i);
  }
  for (size_t i = ahead; i < ahead + kBlock; i += 4 * kElementsPerLine) {
    ((codes != nullptr ? __builtin_prefetch(codes + i) : void()), ...);
  }
}

}  // namespace
}  // namespace simd_adamw
