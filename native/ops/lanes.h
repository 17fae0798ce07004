// The loads and stores of every element type the ops read and write, over one ISA's vector layer
// (F32, native/simd/<isa>.h), for a whole vector (FullVector) or the first n lanes (PartialVector,
// other lanes read as 0 and are not written). Each op's driver reads its arrays through these, so
// the conversions are written once per ISA and the body and the tail convert alike.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../simd/convert.h"
#include "op.h"

namespace simd_adamw {
namespace {

struct FullVector {};
struct PartialVector {
  size_t n;
};

template <class F32>
struct Lanes {
  using V = typename F32::V;
  using U = typename F32::U;

  static V load(const float* p, FullVector) { return F32::load(p); }
  static V load(const float* p, PartialVector t) { return F32::loadPartial(p, t.n); }
  static void store(float* p, V v, FullVector) { F32::store(p, v); }
  static void store(float* p, V v, PartialVector t) { F32::storePartial(p, v, t.n); }

  static V loadBf16(const uint16_t* p, FullVector) { return F32::loadBf16(p); }
  static V loadBf16(const uint16_t* p, PartialVector t) { return F32::loadBf16Partial(p, t.n); }
  static V loadF16(const uint16_t* p, FullVector) { return F32::loadF16(p); }
  static V loadF16(const uint16_t* p, PartialVector t) { return F32::loadF16Partial(p, t.n); }

  // Element i of a gradient of dtype kDtype, widened.
  template <GradDtype kDtype, class Tag>
  static V loadGrad(const void* grad, size_t i, Tag tag) {
    if (kDtype == kGradFloat32) return load(static_cast<const float*>(grad) + i, tag);
    if (kDtype == kGradBfloat16) return loadBf16(static_cast<const uint16_t*>(grad) + i, tag);
    return loadF16(static_cast<const uint16_t*>(grad) + i, tag);
  }

  // Round to nearest even; NaN -> 0x7fc0.
  static void storeBf16(uint16_t* p, V v, FullVector) { F32::storeBf16(p, v); }
  static void storeBf16(uint16_t* p, V v, PartialVector t) { F32::storeBf16Partial(p, v, t.n); }
  // Stochastic, with 16 random bits per lane (in the low half of `random16`'s lanes).
  static void storeBf16Stochastic(uint16_t* p, V v, U random16, FullVector) {
    F32::storeBf16Stochastic(p, v, random16);
  }
  static void storeBf16Stochastic(uint16_t* p, V v, U random16, PartialVector t) {
    F32::storeBf16StochasticPartial(p, v, random16, t.n);
  }
};

}  // namespace
}  // namespace simd_adamw
