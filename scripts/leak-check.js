#!/usr/bin/env node
'use strict';

/**
 * Drives every entry point of the native addon (every kernel, every flag combination, 1 and 2
 * threads, createPlan/runPlan/runPlanAsync with and without the fused control, every error path of
 * the binding and of the API) in a plain node
 * process, so that LeakSanitizer can check at exit that the addon freed everything it allocated.
 * scripts/test-sanitize.sh runs it under the ASan build with detect_leaks=1; see there why this is
 * not done inside jest. It ends by letting the event loop drain (never process.exit): node frees
 * its own memory only on a normal exit, and anything LeakSanitizer reports then is ours.
 *
 *   SIMD_ADAMW_NATIVE=build-asan/Release/simd_adamw.node LD_PRELOAD=$(g++ -print-file-name=libasan.so) \
 *     ASAN_OPTIONS=detect_leaks=1 node scripts/leak-check.js
 *
 * It also refuses to run against anything but the build named by SIMD_ADAMW_NATIVE with the ASan
 * runtime loaded, so a sanitizer run can never silently test the release build.
 */

const fs = require('fs');
const path = require('path');

const ROOT = path.resolve(__dirname, '..');

class LeakCheckError extends Error {}
function fail(message) {
  throw new LeakCheckError(`leak-check: ${message}`);
}

const { AdamW, Adam, adamwStep, adamwStepAsync } = require(path.join(ROOT, 'dist/lib'));
const { native } = require(path.join(ROOT, 'dist/lib/core/native'));

function checkSetup() {
  const wanted = process.env.SIMD_ADAMW_NATIVE;
  if (wanted === undefined || wanted === '') fail('SIMD_ADAMW_NATIVE is not set');
  if (require.cache[path.resolve(wanted)] === undefined) {
    fail(`the addon loaded is not ${path.resolve(wanted)}`);
  }
  if (!fs.readFileSync('/proc/self/maps', 'utf8').includes('libasan')) {
    fail('the ASan runtime is not loaded (LD_PRELOAD it)');
  }
}

// Deterministic pseudo-random floats (no Math.random: a failure must be reproducible).
let seed = 12345;
function nextFloat() {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return (seed / 2 ** 32) * 2 - 1;
}
function randomArray(length) {
  const array = new Float32Array(length);
  for (let i = 0; i < length; i++) array[i] = nextFloat();
  return array;
}

const SCALARS = [0.9, 0.1, 0.999, 0.001, 0.99999, 0, -0.001, 1e-8];
let calls = 0;
let errors = 0;

async function expectReject(what, promise) {
  try {
    await promise;
  } catch (error) {
    if (!(error instanceof TypeError || error instanceof RangeError)) {
      fail(`${what}: expected a TypeError or RangeError, got ${String(error)}`);
    }
    errors++;
    return;
  }
  fail(`${what}: expected a rejection`);
}

function expectThrow(what, fn) {
  try {
    fn();
  } catch (error) {
    if (!(error instanceof TypeError || error instanceof RangeError)) {
      fail(`${what}: expected a TypeError or RangeError, got ${String(error)}`);
    }
    errors++;
    return;
  }
  fail(`${what}: expected an error`);
}

function tensorArrays(length, amsgrad) {
  return [
    randomArray(length),
    randomArray(length),
    randomArray(length),
    randomArray(length).map(Math.abs),
    amsgrad ? randomArray(length).map(Math.abs) : null,
    null, // paramBf16
  ];
}

// A control array asking for the norm, clipping to maxNorm and skipping non-finite steps.
function control(maxNorm, options) {
  const array = new Float64Array(native.control.length);
  array[native.control.maxNorm] = maxNorm;
  array[native.control.gradScale] = 1;
  array[native.control.options] = options;
  return array;
}

async function main() {
  checkSetup();
  const { amsgrad: AMSGRAD } = native.ops.adamw.flags;
  // A bit above every flag the op has.
  const UNKNOWN_FLAG = 2 * Math.max(...Object.values(native.ops.adamw.flags));
  const perTensor = native.ops.adamw.arrays.length;
  // The kernels, through plans: every ISA, every flag combination, lengths around the vector
  // widths and one long enough to be split across threads, several tensors per plan, synchronous
  // and asynchronous, fused and not, on 1 and 2 threads; plans created and dropped each time.
  const options = native.control.optionMeasureNorm | native.control.optionSkipNonFinite;
  for (const isa of native.availableIsas()) {
    native.setIsa(isa);
    for (let flags = 0; flags < 8; flags++) {
      const amsgrad = (flags & AMSGRAD) !== 0;
      const lengths = [0, 1, 3, 15, 16, 17, 33, 1000, 40000];
      const arrays = lengths.flatMap((length) => tensorArrays(length, amsgrad));
      const plan = native.createPlan('adamw', arrays);
      const scalars = new Float64Array(SCALARS);
      const flagArray = new Uint32Array([flags]);
      const tensorSet = new Uint32Array(lengths.length);
      for (let repeat = 0; repeat < 10; repeat++) {
        const threads = 1 + (repeat % 2);
        native.runPlan(plan, scalars, flagArray, tensorSet, threads);
        await native.runPlanAsync(plan, scalars, flagArray, tensorSet, threads);
        native.runPlan(plan, scalars, flagArray, tensorSet, threads, control(1e-3, options));
        await native.runPlanAsync(plan, scalars, flagArray, tensorSet, threads, control(1, 1));
        calls += 4;
      }
      native.gradNorm(
        arrays.filter((_, i) => i % perTensor === 1),
        2,
      );
    }
  }
  native.setIsa(native.availableIsas()[0]);

  // Every error path of the binding (lib/ never sends these; a direct caller could).
  const good = tensorArrays(8, false);
  const goodPlan = native.createPlan('adamw', good);
  const goodScalars = new Float64Array(SCALARS);
  const goodFlags = new Uint32Array([0]);
  const goodSet = new Uint32Array(1);
  const shared = new Float32Array(16);
  for (let repeat = 0; repeat < 50; repeat++) {
    expectThrow('createPlan no arguments', () => native.createPlan());
    expectThrow('createPlan unknown op', () => native.createPlan('sgd', good));
    expectThrow('createPlan not an array', () => native.createPlan('adamw', {}));
    expectThrow('createPlan count', () => native.createPlan('adamw', good.slice(0, 5)));
    expectThrow('createPlan not a Float32Array', () =>
      native.createPlan('adamw', [...good.slice(0, 4), new Float64Array(8), null]),
    );
    expectThrow('createPlan null grad', () =>
      native.createPlan('adamw', [good[0], null, ...good.slice(2)]),
    );
    expectThrow('createPlan length mismatch', () =>
      native.createPlan('adamw', [good[0], new Float32Array(7), ...good.slice(2)]),
    );
    expectThrow('createPlan overlap', () =>
      native.createPlan('adamw', [shared.subarray(0, 8), shared.subarray(4, 12), ...good.slice(2)]),
    );
    expectThrow('runPlan no arguments', () => native.runPlan());
    expectThrow('runPlan not a plan', () => native.runPlan({}, goodScalars, goodFlags, goodSet, 1));
    expectThrow('runPlan threads 0', () =>
      native.runPlan(goodPlan, goodScalars, goodFlags, goodSet, 0),
    );
    expectThrow('runPlan scalars Float32Array', () =>
      native.runPlan(goodPlan, new Float32Array(8), goodFlags, goodSet, 1),
    );
    expectThrow('runPlan flags Int32Array', () =>
      native.runPlan(goodPlan, goodScalars, new Int32Array(1), goodSet, 1),
    );
    expectThrow('runPlan scalar count', () =>
      native.runPlan(goodPlan, new Float64Array(7), goodFlags, goodSet, 1),
    );
    expectThrow('runPlan set out of range', () =>
      native.runPlan(goodPlan, goodScalars, goodFlags, new Uint32Array([1]), 1),
    );
    expectThrow('runPlan amsgrad without maxExpAvgSq', () =>
      native.runPlan(goodPlan, goodScalars, new Uint32Array([AMSGRAD]), goodSet, 1),
    );
    expectThrow('runPlan unknown flag', () =>
      native.runPlan(goodPlan, goodScalars, new Uint32Array([UNKNOWN_FLAG]), goodSet, 1),
    );
    expectThrow('runPlan bad control', () =>
      native.runPlan(goodPlan, goodScalars, goodFlags, goodSet, 1, control(-1, 0)),
    );
    expectThrow('runPlanAsync count mismatch', () =>
      native.runPlanAsync(goodPlan, goodScalars, goodFlags, new Uint32Array(2), 1),
    );
    expectThrow('setIsa type', () => native.setIsa(1));
  }

  // The public API: optimizers created, stepped and dropped; adamwStep; their error paths.
  for (let repeat = 0; repeat < 200; repeat++) {
    const params = [17, 1, 64].map((length, i) => ({
      name: `p${i}`,
      data: randomArray(length),
      grad: randomArray(length),
    }));
    const Optimizer = repeat % 2 === 0 ? AdamW : Adam;
    const optimizer = new Optimizer([{ params, amsgrad: repeat % 3 === 0 }], { weightDecay: 0.1 });
    optimizer.step();
    await optimizer.stepAsync();
    calls += 2;
    params[0].grad = new Float32Array(3);
    expectThrow('replaced grad of another length', () => optimizer.step());
    expectThrow('bad lr', () => new AdamW(params, { lr: NaN }));
    const [param, grad, expAvg, expAvgSq] = tensorArrays(5, false);
    adamwStep(param, grad, expAvg, expAvgSq, {
      step: 1 + repeat,
      lr: 1e-3,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0.01,
    });
    await adamwStepAsync(param, grad, expAvg, expAvgSq, {
      step: 2 + repeat,
      lr: 1e-3,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0.01,
      threads: 2,
    });
    calls += 2;
    await expectReject(
      'adamwStepAsync bad lr',
      adamwStepAsync(param, grad, expAvg, expAvgSq, {
        step: 1,
        lr: -1,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weightDecay: 0,
      }),
    );
    expectThrow('adamwStep overlap', () =>
      adamwStep(param, param, expAvg, expAvgSq, {
        step: 1,
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weightDecay: 0,
      }),
    );
  }

  console.log(
    `leak-check: ${calls} native steps and ${errors} expected errors on ${native.availableIsas().join(', ')}; ` +
      'LeakSanitizer checks at exit',
  );
}

// A failure sets the exit code and lets node exit normally, so LeakSanitizer's report (if any)
// is not buried under what node leaves behind when it dies of an exception.
main().catch((error) => {
  console.error(error instanceof LeakCheckError ? error.message : error);
  process.exitCode = 1;
});
