#!/usr/bin/env node
'use strict';

/**
 * A small tour of the API for valgrind's memcheck (scripts/valgrind-api.sh runs it): every kernel
 * the CPU under valgrind offers, every flag combination, lengths around the vector widths (tails
 * are where masked loads and stores live), a step split across 2 pool threads, stepAsync, the
 * optimizer classes, adamwStep, and the binding's error paths. Kept tiny: node runs ~50x slower
 * under valgrind.
 */

const path = require('path');

const ROOT = path.resolve(__dirname, '..');
const { AdamW, Adam, adamwStep, adamwStepAsync, backend } = require(path.join(ROOT, 'dist/lib'));
const { native } = require(path.join(ROOT, 'dist/lib/native'));

const LENGTHS = [0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 33];

function filled(length, seed) {
  const array = new Float32Array(length);
  for (let i = 0; i < length; i++) array[i] = Math.sin(seed + i);
  return array;
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
  for (const isa of backend.available) {
    backend.setIsa(isa);
    // The binding directly: all tensors of one call share the flags, so each flag set is one call.
    for (let flags = 0; flags < 8; flags++) {
      const amsgrad = (flags & 1) !== 0;
      const arrays = LENGTHS.flatMap((length, k) => [
        filled(length, k),
        filled(length, k + 1),
        filled(length, k + 2),
        filled(length, k + 3).map(Math.abs),
        amsgrad ? filled(length, k + 4).map(Math.abs) : null,
      ]);
      const scalars = new Float64Array(
        LENGTHS.flatMap(() => [0.9, 0.1, 0.999, 0.001, 0.99, 0.01, -0.001, 1e-8]),
      );
      native.step(arrays, scalars, new Uint32Array(LENGTHS.length).fill(flags), 1);
      steps++;
    }
    // One tensor large enough that the pool splits it across 2 threads, synchronously and not.
    const large = [0, 1, 2, 3].map((seed) => filled(40000, seed));
    const largeScalars = new Float64Array([0.9, 0.1, 0.999, 0.001, 0.99, 0.01, -0.001, 1e-8]);
    native.step([...large, null], largeScalars, new Uint32Array(1), 2);
    await native.stepAsync([...large, null], largeScalars, new Uint32Array(1), 2);
    steps += 2;
  }
  backend.setIsa(backend.available[0]);

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
  const good = [param, grad, expAvg, expAvgSq, null];
  const scalars = new Float64Array(8);
  expectError(() => native.step());
  expectError(() => native.step(good, scalars, new Uint32Array(1)));
  expectError(() => native.step(good, scalars, new Uint32Array(2), 1));
  expectError(() => native.step(good, scalars, new Uint32Array(1), 0));
  expectError(() => native.stepAsync(good, scalars, new Uint32Array(2), 1));
  expectError(() =>
    native.step([param, param, expAvg, expAvgSq, null], scalars, new Uint32Array(1), 1),
  );
  expectError(() =>
    native.step([param, filled(3, 1), expAvg, expAvgSq, null], scalars, new Uint32Array(1), 1),
  );
  expectError(() =>
    native.step([param, grad, expAvg, expAvgSq, null], scalars, new Uint32Array([1]), 1),
  );
  expectError(() => adamwStep(param, grad, expAvg, expAvgSq, { step: 0 }));

  console.log(
    `valgrind-api: ${steps} native steps on ${backend.available.join(', ')}, ${errors} expected errors`,
  );
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
