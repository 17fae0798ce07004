// The lean-state part of a vector layer (16-bit loads and stores, the stochastic rounding's random
// bits), lane by lane through a buffer with the element definitions of native/simd/convert.h, over
// a layer's float32 core `Core` (load, store, loadPartial, storePartial). A layer derives its F32
// from this and replaces what it does faster in registers; each replacement must give these bits.
#pragma once

#include <cstddef>
#include <cstdint>

#include "convert.h"

namespace simd_adamw {
namespace {

template <class Core>
struct BufferedLanes : Core {
  using V = typename Core::V;
  static constexpr size_t kWidth = Core::kWidth;
  // kWidth 32-bit integer lanes.
  struct U {
    uint32_t lane[kWidth];
  };

  static V loadBf16Partial(const uint16_t* p, size_t n) {
    float buffer[kWidth] = {};
    for (size_t j = 0; j < n; ++j) buffer[j] = floatOfBits(widenBf16(p[j]));
    return Core::load(buffer);
  }
  static V loadBf16(const uint16_t* p) { return loadBf16Partial(p, kWidth); }
  static V loadF16Partial(const uint16_t* p, size_t n) {
    float buffer[kWidth] = {};
    for (size_t j = 0; j < n; ++j) buffer[j] = floatOfBits(widenF16(p[j]));
    return Core::load(buffer);
  }
  static V loadF16(const uint16_t* p) { return loadF16Partial(p, kWidth); }

  static void storeBf16Partial(uint16_t* p, V v, size_t n) {
    float buffer[kWidth];
    Core::store(buffer, v);
    for (size_t j = 0; j < n; ++j) p[j] = narrowBf16Rne(bitsOfFloat(buffer[j]));
  }
  static void storeBf16(uint16_t* p, V v) { storeBf16Partial(p, v, kWidth); }
  static void storeBf16StochasticPartial(uint16_t* p, V v, const U& random16, size_t n) {
    float buffer[kWidth];
    Core::store(buffer, v);
    for (size_t j = 0; j < n; ++j) {
      p[j] = narrowBf16Stochastic(bitsOfFloat(buffer[j]), random16.lane[j]);
    }
  }
  static void storeBf16Stochastic(uint16_t* p, V v, const U& random16) {
    storeBf16StochasticPartial(p, v, random16, kWidth);
  }

  // Lane j: randomBitsOf(key, i + j) (i taken mod 2^32).
  static U randomBits(uint32_t key, size_t i) {
    U r;
    for (size_t j = 0; j < kWidth; ++j) r.lane[j] = randomBitsOf(key, static_cast<uint32_t>(i + j));
    return r;
  }
  static U low16(const U& r) {
    U out;
    for (size_t j = 0; j < kWidth; ++j) out.lane[j] = r.lane[j] & 0xffffu;
    return out;
  }
  static U high16(const U& r) {
    U out;
    for (size_t j = 0; j < kWidth; ++j) out.lane[j] = r.lane[j] >> 16;
    return out;
  }
};

}  // namespace
}  // namespace simd_adamw
