#!/usr/bin/env node
'use strict';

/**
 * Soak test: a long training run and many optimizer lifetimes in one process, checking that memory
 * and handles stay flat. Prints what it measured and a verdict; exits 1 on failure.
 *
 *   npm run soak                                   (100,000 steps, 1,000 optimizers; about a minute)
 *   node --expose-gc scripts/soak.js --steps 5000 --cycles 100     (the short run .ci/run does)
 *
 * Phase 1 trains a small model (five tensors, 5,201 parameters, two param groups, AMSGrad on one)
 * on a quadratic loss for --steps steps, every other one with stepAsync, with the things a real
 * loop does between steps: a learning-rate schedule through paramGroups, gradients replaced by new
 * arrays, zeroGrad, state(), memory(), adamwStep/adamwStepAsync on caller-owned state (1 and 2
 * threads), and rejected bad input.
 * Phase 2 creates --cycles optimizers (1 or 2 threads), each with its own 135 KB of parameters and
 * grads and 135-200 KB of state, steps each twice and once with stepAsync, drops it, and checks
 * with a FinalizationRegistry that they are collected.
 *
 * Checks (after a forced GC; see LIMITS for the numbers and why):
 *  - external memory (ArrayBuffer backing stores, counted exactly by V8) back to its baseline;
 *  - RSS flat over the second half of each phase, within bounds far under what a leak would add;
 *  - the watched optimizers and their state arrays collected;
 *  - active libuv handles and requests, and the process's thread count, unchanged;
 *  - the model trained (loss fell) and stayed finite.
 */

const fs = require('fs');
const path = require('path');

const { AdamW, Adam, adamwStep, adamwStepAsync } = require(
  path.join(__dirname, '..', 'dist', 'lib'),
);

// Numbers a leak would blow through, with room for allocator noise.
//
// External memory (ArrayBuffer backing stores, which is where parameters and optimizer state live)
// is counted exactly by V8 and returns to its baseline within a few KB in a healthy run.
//
// RSS is noisier: glibc keeps freed blocks and V8 grows its pages in steps of 1-2 MB, so "flat" is
// judged over the second half of each phase, and start to end with a wider margin. Measured on the
// 2-core CI machine (Node 20): a healthy full run moves by +1 to +2 MB over the second half of
// phase 1, 0 to +4 MB over the second half of phase 2, and +3 to +8 MB start to end.
const LIMITS = {
  // One leaked optimizer's state is >= 135 KB: 8 leaked optimizers exceed this.
  externalGrowthBytes: 1 << 20,
  // Phase 1, second half: a leak of 160 bytes per step over 50,000 steps.
  rssGrowthPerHalfTraining: 8 << 20,
  // Phase 2, second half: 120 leaked optimizer states out of 500.
  rssGrowthPerHalfLifetimes: 16 << 20,
  // Start to end: 300 leaked optimizer states, or 1 KB per step over 100,000 steps (the short CI
  // run only catches leaks larger than ~5 KB per step here; scripts/leak-check.js under
  // LeakSanitizer catches any size).
  rssGrowthTotal: 48 << 20,
};

function parseArgs(argv) {
  const options = { steps: 100000, cycles: 1000 };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '');
    const value = Number(argv[i + 1]);
    if (!(key in options) || !Number.isSafeInteger(value) || value < 1) {
      console.error('usage: node --expose-gc scripts/soak.js [--steps N] [--cycles N]');
      process.exit(2);
    }
    options[key] = value;
    i++;
  }
  return options;
}

if (typeof global.gc !== 'function') {
  console.error('soak: run with node --expose-gc (npm run soak does)');
  process.exit(2);
}

const MB = 1 << 20;
const mb = (bytes) => `${(bytes / MB).toFixed(2)} MB`;
const signedMb = (bytes) => `${bytes >= 0 ? '+' : ''}${mb(bytes)}`;

// Lets FinalizationRegistry callbacks and pending native work run, then collects twice.
async function settle() {
  for (let i = 0; i < 3; i++) {
    global.gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

function threadCount() {
  try {
    const match = /^Threads:\s+(\d+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

function sample() {
  const usage = process.memoryUsage();
  return {
    rss: usage.rss,
    heapUsed: usage.heapUsed,
    external: usage.external,
    arrayBuffers: usage.arrayBuffers,
    handles: process._getActiveHandles().length,
    requests: process._getActiveRequests().length,
    threads: threadCount(),
  };
}

// Deterministic pseudo-random numbers in [-1, 1): a failing run can be repeated exactly.
function random(seed) {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 31 - 1;
  };
}

function tensor(length, next, scale = 1) {
  const array = new Float32Array(length);
  for (let i = 0; i < length; i++) array[i] = next() * scale;
  return array;
}

// ---------------------------------------------------------------------------------------------
// Phase 1: one small model, many steps.

async function trainModel(steps, samples) {
  const next = random(1);
  const shapes = [
    ['fc1.weight', 4096],
    ['fc1.bias', 64],
    ['fc2.weight', 1024],
    ['fc2.bias', 16],
    ['scale', 1],
  ];
  const params = shapes.map(([name, length]) => ({
    name,
    data: tensor(length, next),
    grad: new Float32Array(length),
  }));
  const targets = params.map((p) => tensor(p.data.length, next, 0.5));
  const optimizer = new AdamW(
    [
      { params: [params[0], params[2]], weightDecay: 0.01 },
      { params: [params[1], params[3], params[4]], weightDecay: 0, amsgrad: true },
    ],
    { lr: 1e-2 },
  );
  // A parameter the caller steps with adamwStep and its own state.
  const own = {
    param: tensor(257, next),
    grad: tensor(257, next),
    expAvg: new Float32Array(257),
    expAvgSq: new Float32Array(257),
  };

  // Loss 0.5 * |p - target|^2; its gradient is p - target.
  const lossAndGrad = () => {
    let loss = 0;
    for (let k = 0; k < params.length; k++) {
      const { data, grad } = params[k];
      const target = targets[k];
      for (let i = 0; i < data.length; i++) {
        const diff = data[i] - target[i];
        grad[i] = diff;
        loss += 0.5 * diff * diff;
      }
    }
    return loss;
  };

  const firstLoss = lossAndGrad();
  let rejected = 0;
  const every = Math.max(1, Math.floor(steps / 10));
  for (let step = 1; step <= steps; step++) {
    lossAndGrad();
    // Every other step off the main thread, through the same pool of native threads.
    if (step % 2 === 0) await optimizer.stepAsync();
    else optimizer.step();
    // Cosine schedule, set through the groups as a training loop would.
    const lr = 1e-3 + 0.5 * (1e-2 - 1e-3) * (1 + Math.cos((Math.PI * step) / steps));
    for (const group of optimizer.paramGroups) group.lr = lr;
    const ownOptions = {
      step,
      lr: 1e-3,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0,
      threads: 1 + (step % 2),
    };
    if (step % 10 === 0)
      await adamwStepAsync(own.param, own.grad, own.expAvg, own.expAvgSq, ownOptions);
    else adamwStep(own.param, own.grad, own.expAvg, own.expAvgSq, ownOptions);
    if (step % 97 === 0) {
      // A new gradient array (the optimizer re-checks overlap), and the old one is garbage.
      params[1].grad = new Float32Array(params[1].data.length);
      optimizer.zeroGrad();
      optimizer.state(params[0]);
      optimizer.memory();
    }
    if (step % 1009 === 0) {
      // Bad input between good steps: rejected, and leaves nothing behind.
      const saved = params[3].grad;
      params[3].grad = new Float32Array(3);
      try {
        optimizer.step();
      } catch (error) {
        if (!(error instanceof RangeError)) throw error;
        rejected++;
      }
      params[3].grad = saved;
    }
    if (step % every === 0) samples.push({ step, ...sample() });
  }
  const lastLoss = lossAndGrad();
  const finite = params.every((p) => p.data.every(Number.isFinite));
  return { firstLoss, lastLoss, finite, rejected, stepsTaken: optimizer.state(params[0]).step };
}

// ---------------------------------------------------------------------------------------------
// Phase 2: many optimizers, each created, stepped and dropped.

// In its own function, so no local of the caller's frame keeps the last optimizer alive.
async function oneLifetime(cycle, next, registry) {
  const params = [
    { data: tensor(16384, next), grad: tensor(16384, next) },
    { data: tensor(513, next), grad: tensor(513, next) },
  ];
  const Optimizer = cycle % 2 === 0 ? AdamW : Adam;
  const optimizer = new Optimizer(params, {
    amsgrad: cycle % 3 === 0,
    weightDecay: 0.01,
    threads: 1 + (cycle % 2),
  });
  optimizer.step();
  optimizer.step();
  await optimizer.stepAsync();
  // The optimizer and its state are reachable from nothing once this function returns. One in ten is
  // watched: registering every one keeps them all alive through young-generation GCs, which makes
  // V8 and glibc hold ~100 MB more RSS, the same with plain Float32Arrays and no addon at all.
  if (cycle % 10 !== 0) return 0;
  registry.register(optimizer.state(params[0]).expAvg, cycle);
  registry.register(optimizer, -cycle);
  return 2;
}

async function optimizerLifetimes(cycles, samples) {
  let finalized = 0;
  const registry = new FinalizationRegistry(() => {
    finalized++;
  });
  const next = random(2);
  const every = Math.max(1, Math.floor(cycles / 10));
  let watched = 0;
  for (let cycle = 1; cycle <= cycles; cycle++) {
    watched += await oneLifetime(cycle, next, registry);
    if (cycle % every === 0) {
      await settle();
      samples.push({ cycle, ...sample() });
    }
  }
  await settle();
  await settle();
  return { watched, finalized };
}

// ---------------------------------------------------------------------------------------------

function printSamples(label, key, samples) {
  console.log(label);
  for (const s of samples) {
    console.log(
      `  ${key} ${String(s[key]).padStart(7)}: rss ${mb(s.rss)}, heapUsed ${mb(s.heapUsed)}, ` +
        `external ${mb(s.external)}, ` +
        `arrayBuffers ${mb(s.arrayBuffers)}, handles ${s.handles}, requests ${s.requests}, ` +
        `threads ${s.threads ?? 'n/a'}`,
    );
  }
}

async function main() {
  const { steps, cycles } = parseArgs(process.argv.slice(2));
  const started = Date.now();
  // Warm up first: the addon and V8 allocate some things once, on first use (kernel dispatch, JIT
  // code, any worker threads), and those are not leaks.
  await trainModel(200, []);
  await optimizerLifetimes(10, []);
  await settle();
  const start = sample();

  const stepSamples = [];
  const training = await trainModel(steps, stepSamples);
  await settle();
  const afterTraining = sample();

  const cycleSamples = [];
  const lifetimes = await optimizerLifetimes(cycles, cycleSamples);
  await settle();
  const end = sample();

  printSamples(
    `phase 1: ${steps} steps of a 5,201-parameter model (+ adamwStep on 257)`,
    'step',
    stepSamples,
  );
  printSamples(
    `phase 2: ${cycles} optimizers created, stepped 3 times (once async) and dropped`,
    'cycle',
    cycleSamples,
  );

  const failures = [];
  const check = (ok, message) => {
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${message}`);
    if (!ok) failures.push(message);
  };
  const externalGrowth = end.external - start.external;
  const rssGrowth = end.rss - start.rss;
  const halfGrowth = (samples) =>
    samples.length < 2
      ? 0
      : samples[samples.length - 1].rss - samples[Math.floor(samples.length / 2) - 1].rss;
  const trainingHalfGrowth = halfGrowth(stepSamples);
  const lifetimesHalfGrowth = halfGrowth(cycleSamples);
  console.log(
    `start: rss ${mb(start.rss)}, external ${mb(start.external)}; after phase 1: rss ` +
      `${mb(afterTraining.rss)}, external ${mb(afterTraining.external)}; end: rss ${mb(end.rss)}, ` +
      `external ${mb(end.external)}`,
  );
  check(
    training.finite && training.lastLoss < training.firstLoss * 1e-3,
    `training: loss ${training.firstLoss.toExponential(3)} -> ${training.lastLoss.toExponential(3)}, ` +
      `params finite, ${training.stepsTaken} steps, ${training.rejected} bad steps rejected`,
  );
  check(
    training.stepsTaken === steps,
    `every good step counted (${training.stepsTaken} of ${steps}), no rejected step applied`,
  );
  check(
    Math.abs(externalGrowth) <= LIMITS.externalGrowthBytes,
    `external memory ${signedMb(externalGrowth)} (limit ±${mb(LIMITS.externalGrowthBytes)})`,
  );
  check(
    trainingHalfGrowth <= LIMITS.rssGrowthPerHalfTraining,
    `RSS over the second half of phase 1 ${signedMb(trainingHalfGrowth)} (limit ${mb(LIMITS.rssGrowthPerHalfTraining)})`,
  );
  check(
    lifetimesHalfGrowth <= LIMITS.rssGrowthPerHalfLifetimes,
    `RSS over the second half of phase 2 ${signedMb(lifetimesHalfGrowth)} (limit ${mb(LIMITS.rssGrowthPerHalfLifetimes)})`,
  );
  check(
    rssGrowth <= LIMITS.rssGrowthTotal,
    `RSS start to end ${signedMb(rssGrowth)} (limit ${mb(LIMITS.rssGrowthTotal)})`,
  );
  check(
    lifetimes.finalized === lifetimes.watched,
    `watched optimizers and their state arrays collected: ${lifetimes.finalized} of ${lifetimes.watched}`,
  );
  check(
    end.handles === start.handles && end.requests === start.requests,
    `libuv handles ${start.handles} -> ${end.handles}, requests ${start.requests} -> ${end.requests}`,
  );
  check(end.threads === start.threads, `threads ${start.threads} -> ${end.threads}`);

  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (failures.length > 0) {
    console.log(`soak: FAIL (${failures.length} check(s), ${seconds} s)`);
    process.exit(1);
  }
  console.log(`soak: PASS (${steps} steps, ${cycles} optimizers, ${seconds} s)`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
