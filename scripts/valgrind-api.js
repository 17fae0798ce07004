#!/usr/bin/env node
'use strict';

/**
 * A small tour of the API for valgrind's memcheck (scripts/valgrind-api.sh runs it): every kernel
 * the CPU under valgrind offers, every flag combination, lengths around the vector widths (tails
 * are where masked loads and stores live), plans run split across 2 pool threads, runPlanAsync and the
 * fused control, the
 * optimizer classes, adamwStep, and the binding's error paths. Kept tiny: node runs ~50x slower
 * under valgrind.
 */

const path = require('path');

const ROOT = path.resolve(__dirname, '..');
const { AdamW, Adam, adamwStep, adamwStepAsync } = require(path.join(ROOT, 'dist/lib'));
const { native } = require(path.join(ROOT, 'dist/lib/core/native'));

const LENGTHS = [0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 33];

function filled(length, seed) {
  const array = new Float32Array(length);
  for (let i = 0; i < length; i++) array[i] = Math.sin(seed + i);
  return array;
}

// Whether `layout` is a factored op (adafactor, came): its tensors take createPlan's shapes.
function isFactoredOp(layout) {
  return layout.arrayLengths.includes('rows');
}

// Tensor k's [batches, R, C] under a factored op: every third tensor 1-D, the others one row or
// one column of `length` elements.
function shapeOf(length, k) {
  if (k % 3 === 0 || length === 0) return [0, 0, 0];
  return k % 3 === 1 ? [1, 1, length] : [1, length, 1];
}

// One tensor's arrays for `layout` (native.ops[op]): values a step can take, every optional array
// a flag in `flags` needs, a paramBf16 on odd k; under a factored op the arrays of its shape.
function opArrays(layout, length, k, flags, gradDtype) {
  const blocks = Math.ceil(length / layout.blockSize);
  const [batches, rows, cols] = isFactoredOp(layout) ? shapeOf(length, k) : [0, 0, 0];
  const factored = batches > 0;
  return layout.arrays.map((name, a) => {
    const need = layout.optionalArrays[name];
    if (need === 'tensor' && k % 2 === 0) return null;
    if (need === 'factored' || need === 'unfactored') {
      if ((need === 'factored') !== factored) return null;
    } else if (need !== undefined && need !== 'tensor' && (flags & layout.flags[need]) === 0) {
      return null;
    }
    const kind = layout.arrayLengths[a];
    const n =
      kind === 'blocks'
        ? blocks
        : kind === 'rows'
          ? batches * rows
          : kind === 'cols'
            ? batches * cols
            : length;
    const values = filled(n, k + a).map(Math.abs);
    switch (layout.arrayTypes[a]) {
      case 'float32':
        return values;
      case 'grad':
        return gradDtype === 0
          ? values
          : new Uint16Array(new Uint32Array(values.buffer).map((x) => x >>> 16));
      case 'bfloat16':
        return new Uint16Array(new Uint32Array(values.buffer).map((x) => x >>> 16));
      default:
        return new Uint8Array(n).map((_, i) => (i * 37 + k) & 255);
    }
  });
}

let steps = 0;
let errors = 0;
function expectError(fn) {
  try {
    fn();
  } catch {
    errors++;
    return;
  }
  throw new Error('expected an error');
}

async function main() {
  const SCALARS = [0.9, 0.1, 0.999, 0.001, 0.99, 0.01, -0.001, 1e-8];
  for (const isa of native.availableIsas()) {
    native.setIsa(isa);
    // The binding directly: for every op, grad dtype and public flag set, one plan of every
    // length (every other tensor with a bf16 copy of its param), all tensors in one scalar set.
    for (const [op, layout] of Object.entries(native.ops)) {
      const publicFlags = Object.values(layout.flags).reduce((all, bit) => all | bit, 0);
      for (let gradDtype = 0; gradDtype < 3; gradDtype++) {
        for (let flags = 0; flags <= publicFlags; flags++) {
          if ((flags & ~publicFlags) !== 0) continue;
          const arrays = LENGTHS.flatMap((length, k) =>
            opArrays(layout, length, k, flags, gradDtype),
          );
          const gradDtypes = new Uint8Array(LENGTHS.length).fill(gradDtype);
          const plan = isFactoredOp(layout)
            ? native.createPlan(
                op,
                arrays,
                gradDtypes,
                new Uint32Array(LENGTHS.flatMap((length, k) => shapeOf(length, k))),
              )
            : native.createPlan(op, arrays, gradDtypes);
          const seeds = new Uint32Array(LENGTHS.map((_, k) => 0x9e3779b9 * (k + 1)));
          native.runPlan(
            plan,
            new Float64Array(layout.scalars.map((_, i) => SCALARS[i % SCALARS.length])),
            new Uint32Array([flags]),
            new Uint32Array(LENGTHS.length),
            1,
            undefined,
            seeds,
          );
          steps++;
        }
      }
    }
    // One tensor large enough that the pool splits it across 2 threads, synchronously and not,
    // and fused with the control (norm, clip).
    const large = native.createPlan('adamw', [
      ...[0, 1, 2, 3].map((seed) => filled(40000, seed)),
      null,
      null,
    ]);
    const run = [new Float64Array(SCALARS), new Uint32Array(1), new Uint32Array(1), 2];
    native.runPlan(large, ...run);
    await native.runPlanAsync(large, ...run);
    const control = new Float64Array(native.control.length);
    control[native.control.maxNorm] = 1;
    control[native.control.gradScale] = 1;
    control[native.control.options] = native.control.optionMeasureNorm;
    await native.runPlanAsync(large, ...run, control);
    steps += 3;
  }
  native.setIsa(native.availableIsas()[0]);

  const params = LENGTHS.map((length, k) => ({
    data: filled(length, k),
    grad: filled(length, k + 9),
  }));
  for (const Optimizer of [AdamW, Adam]) {
    const optimizer = new Optimizer(
      [
        { params: params.slice(0, 5), amsgrad: true, maximize: true },
        { params: params.slice(5), weightDecay: 0.1 },
      ],
      { lr: 1e-2 },
    );
    optimizer.step();
    await optimizer.stepAsync();
    steps += 2;
    optimizer.zeroGrad();
    optimizer.memory();
  }

  const [param, grad, expAvg, expAvgSq] = [1, 2, 3, 4].map((seed) => filled(17, seed));
  adamwStep(param, grad, expAvg, expAvgSq, {
    step: 1,
    lr: 1e-3,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0.01,
    maxExpAvgSq: filled(17, 5).map(Math.abs),
  });
  await adamwStepAsync(param, grad, expAvg, expAvgSq, {
    step: 2,
    lr: 1e-3,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0.01,
  });
  steps += 2;

  // Error paths of the binding: every one throws before a kernel runs.
  const good = [param, grad, expAvg, expAvgSq, null, null];
  const plan = native.createPlan('adamw', good);
  const scalars = new Float64Array(8);
  const one = new Uint32Array(1);
  expectError(() => native.createPlan());
  expectError(() => native.createPlan('adamw', good.slice(1)));
  expectError(() => native.createPlan('adamw', [param, param, expAvg, expAvgSq, null, null]));
  expectError(() =>
    native.createPlan('adamw', [param, filled(3, 1), expAvg, expAvgSq, null, null]),
  );
  expectError(() => native.createPlan('adamw', good, new Uint8Array([1])));
  expectError(() => native.runPlan());
  expectError(() => native.runPlan(plan, scalars, one, one));
  expectError(() => native.runPlan(plan, scalars, one, new Uint32Array(2), 1));
  expectError(() => native.runPlan(plan, scalars, one, one, 0));
  expectError(() => native.runPlanAsync(plan, scalars, one, new Uint32Array(2), 1));
  expectError(() => native.runPlan(plan, scalars, new Uint32Array([1]), one, 1));
  expectError(() => adamwStep(param, grad, expAvg, expAvgSq, { step: 0 }));

  console.log(
    `valgrind-api: ${steps} native steps on ${native.availableIsas().join(', ')}, ${errors} expected errors`,
  );
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
