// bitsandbytes' dynamic quantization maps rebuilt from their definition, the way bitsandbytes
// computes them on x86-64 under torch, as an independent check of the constant tables in
// native/ops/blockwise8-codes.h and of the fixture test/fixtures/bnb-dynamic-maps.json.
//
// bitsandbytes/functional.py, create_dynamic_map(signed, max_exponent_bits=7, total_bits=8):
//   non_sign_bits = 7 (total_bits - 1 for both signed and unsigned); additional_items = 2^0 - 1 = 0
//   for i in 0..6:
//     fraction_items = 2^i + 1 (signed) or 2^(i+1) + 1 (unsigned)
//     boundaries = torch.linspace(0.1, 1, fraction_items)          # float32 tensor
//     means = (boundaries[:-1] + boundaries[1:]) / 2.0             # float32 add, then / 2
//     data += (10 ** (i - 6) * means).tolist()                     # Python float * float32 tensor
//     if signed: data += (-(10 ** (i - 6)) * means).tolist()
//   data += [0, 1.0]; data.sort()                                  # 256 values
//
// The float32 details that decide the last bit:
// - torch.linspace on the CPU (aten/src/ATen/native/cpu/RangeFactoriesKernel.cpp, linspace_kernel,
//   a serial loop): step = (end - start) / (steps - 1) in float32, then element idx is
//   `start + step * idx` for idx < steps / 2 and `end - step * (steps - idx - 1)` after. That file is
//   compiled per CPU capability with -mavx2 -mfma and GCC's default -ffp-contract=fast, so each
//   element is one fused multiply-add: fma(step, idx, start) or fma(-step, k, end). Without the
//   fusion 42 signed and 31 unsigned values come out 1-2 ulp different; with it, all 512 equal the
//   fixture (evaluated with torch 1.13) bit for bit.
// - `10 ** (i - 6)` is a Python float: CPython evaluates int ** negative int as C pow(10.0, i - 6.0),
//   which for these exponents is the double nearest 10^(i-6), i.e. the literal 1e-6 etc.
//   (JavaScript's 10 ** -5 is one ulp off that double, so the literals are used; after rounding to
//   float32 the difference would vanish anyway). For i = 6 it is the int 1.
// - A Python scalar times a float32 CPU tensor: ATen wraps the scalar and computes in the tensor's
//   dtype, so the scalar is rounded to float32 and the product is one float32 multiply.
import { fmaFloat32 } from './float32-exact';

const { fround } = Math;

/** The Python float 10 ** (i - 6) for i = 0..6 (see above). */
const SCALES = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1] as const;

/** torch.linspace(start, end, steps) for a float32 tensor on an x86-64 CPU with FMA. */
export function torchLinspaceFloat32(start: number, end: number, steps: number): Float32Array {
  const first = fround(start);
  const last = fround(end);
  const step = fround(fround(last - first) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  const out = new Float32Array(steps);
  for (let idx = 0; idx < steps; idx++) {
    out[idx] =
      idx < halfway ? fmaFloat32(step, idx, first) : fmaFloat32(-step, steps - idx - 1, last);
  }
  return out;
}

/** create_dynamic_map(signed, max_exponent_bits=7, total_bits=8) as float32, ascending; `linspace`
 * is replaceable so that a test can show that another evaluation of it gives other bits. */
export function createDynamicMap(
  signed: boolean,
  linspace: (start: number, end: number, steps: number) => Float32Array = torchLinspaceFloat32,
): Float32Array {
  const data: number[] = [];
  for (let i = 0; i < 7; i++) {
    const fractionItems = signed ? 2 ** i + 1 : 2 ** (i + 1) + 1;
    const boundaries = linspace(0.1, 1, fractionItems);
    const scale = fround(SCALES[i]!);
    const means: number[] = [];
    for (let k = 0; k + 1 < fractionItems; k++) {
      means.push(fround(fround(boundaries[k]! + boundaries[k + 1]!) / 2));
    }
    for (const mean of means) data.push(fround(scale * mean));
    if (signed) for (const mean of means) data.push(fround(-scale * mean));
  }
  data.push(0, 1);
  data.sort((a, b) => a - b);
  return Float32Array.from(data);
}
