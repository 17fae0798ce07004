// The element conversions and the hash of the lean-state formats, one element at a time, in plain
// integer C++: the definitions every vector layer's versions (native/simd/<isa>.h) must match bit
// for bit, and what they use on lanes they handle one by one. Integer operations only (the fp16
// subnormal case multiplies by a power of two, which is exact), so every ISA gets the same bits.
#pragma once

#include <cstdint>
#include <cstring>

namespace simd_adamw {

// The bf16 NaN every store writes (the float32 canonical NaN's top half).
constexpr uint16_t kCanonicalBf16NanBits = 0x7fc0u;

inline uint32_t bitsOfFloat(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
}

inline float floatOfBits(uint32_t bits) {
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

inline bool isNanFloatBits(uint32_t x) { return (x & 0x7fffffffu) > 0x7f800000u; }

// bf16 is the top half of a float32: widening is exact.
inline uint32_t widenBf16(uint16_t h) { return static_cast<uint32_t>(h) << 16; }

// float32 -> bf16, round to nearest, ties to even (on the integer bits: adding 0x7fff plus the
// kept part's lowest bit carries into it exactly when the dropped half is above one half, or is
// one half and the kept part is odd). Overflow rounds to Inf, as RNE does; NaN -> the canonical
// one.
inline uint16_t narrowBf16Rne(uint32_t x) {
  if (isNanFloatBits(x)) return kCanonicalBf16NanBits;
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

// float32 -> bf16, stochastic: the magnitude is rounded up with probability (dropped bits) / 2^16
// for random16 uniform in [0, 65536). NaN -> the canonical one.
inline uint16_t narrowBf16Stochastic(uint32_t x, uint32_t random16) {
  if (isNanFloatBits(x)) return kCanonicalBf16NanBits;
  return static_cast<uint16_t>((x + random16) >> 16);
}

// IEEE binary16 -> binary32, exact. Exponent and mantissa shifted into float32 position read as a
// float 2^112 too small (the exponent biases differ by 127 - 15 = 112), subnormals included, so
// one exact multiply by 2^112 rebases them; Inf and NaN (exponent 31) get the float32 exponent 255.
inline uint32_t widenF16(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t magnitude = static_cast<uint32_t>(h & 0x7fffu) << 13;
  if ((h & 0x7c00u) == 0x7c00u) return sign | 0x7f800000u | magnitude;
  return sign | bitsOfFloat(floatOfBits(magnitude) * 0x1p112f);
}

// torch.sign on float32 bits: +-1 (the input's sign) for every nonzero number, Inf included; the
// input itself for +0 and -0; the canonical NaN for NaN. Lion's update direction (native/ops/
// lion-math.h): sign(0) = 0 leaves an element whose interpolated moment is exactly 0 in place.
inline uint32_t signBits(uint32_t x) {
  if (isNanFloatBits(x)) return 0x7fc00000u;
  if ((x & 0x7fffffffu) == 0) return x;
  return (x & 0x80000000u) | 0x3f800000u;
}

// The "lowbias32" integer hash (Chris Wellons' hash-prospector), the stochastic rounding's source.
inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

// The golden-ratio constant that spreads element indices before they are hashed with the key.
constexpr uint32_t kIndexSpread = 0x9e3779b9u;

// The 32 random bits of element i of a tensor whose step key is `key`.
inline uint32_t randomBitsOf(uint32_t key, uint32_t i) { return mix32(key ^ (i * kIndexSpread)); }

}  // namespace simd_adamw
