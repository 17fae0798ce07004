// The quiet NaN every kernel stores for a NaN result (the bits of std::numeric_limits<float>::
// quiet_NaN() and of JavaScript's NaN written to a Float32Array). IEEE leaves a NaN result's sign
// and payload to the hardware and the compiler, so the vector layers canonicalize what they store.
#pragma once

#include <cstdint>

namespace simd_adamw {

constexpr uint32_t kCanonicalNanBits = 0x7fc00000u;

}  // namespace simd_adamw
