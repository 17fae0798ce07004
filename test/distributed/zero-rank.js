'use strict';
// One rank of a ZeRO-1 thread-group test (test/zero-threads.test.ts): a worker thread that joins
// the group, creates a ZeroRedundancyOptimizer and steps it with deterministic gradients, then
// posts what happened. Also the gradient generator the test's unsharded reference uses.
const { parentPort, workerData } = require('node:worker_threads');

// A deterministic float32 in about [-1, 1) from integers (a small counter hash).
function hashFloat(a, b, c, d) {
  let h = (a * 0x9e3779b1) ^ (b * 0x85ebca77) ^ (c * 0xc2b2ae3d) ^ (d * 0x27d4eb2f);
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d);
  h = Math.imul(h ^ (h >>> 12), 0x297a2d39);
  h ^= h >>> 15;
  return ((h >>> 8) / 0x800000 - 1) * 0.5;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function toBf16(x) {
  f32[0] = x;
  return u32[0] >>> 16; // truncation: any bf16 value will do
}

/** Rank `rank`'s gradient of tensor k at step `step`, into `grad` (float32 or bf16 bits). */
function fillGrad(grad, dtype, rank, step, k, scale) {
  for (let i = 0; i < grad.length; i++) {
    const x = hashFloat(rank + 1, step + 1, k + 1, i + 1) * scale;
    grad[i] = dtype === 'bfloat16' ? toBf16(x) : x;
  }
}

module.exports = { fillGrad, hashFloat };

if (workerData !== null && workerData !== undefined && workerData.zeroTest === true) {
  const lib = require(workerData.lib);
  const { handle, optimizer, options, steps, stepOptions, scale, mutate, saveDir, loadDir } =
    workerData;
  // gradRanks: feed the reduced gradient of a run of that many ranks (resuming its checkpoint on
  // another world size): ranks below it take their own gradients and the others zeros, or, on
  // one rank, rank 0 takes their float32 sum in rank order.
  const gradRanks = workerData.gradRanks;
  const { communicator, params } = lib.joinThreadGroup(handle);
  const rank = communicator.rank;
  const post = (message) => parentPort.postMessage({ rank, ...message });
  try {
    const groups = [{ params: params.slice(0, 2) }, { params: params.slice(2), weightDecay: 0 }];
    const zeroOptions = { ...options, optimizerClass: lib[optimizer], communicator };
    if (mutate === 'lr' && rank === 1) zeroOptions.lr = 0.5;
    if (mutate === 'shape' && rank === 1) params[0].shape = [params[0].data.length, 1];
    const zero = new lib.ZeroRedundancyOptimizer(groups, zeroOptions);
    if (loadDir !== undefined) zero.loadFrom(loadDir);
    const reports = [];
    const first = loadDir !== undefined ? zero.steps : 0;
    for (let s = first; s < first + steps; s++) {
      for (const [k, p] of params.entries()) {
        const dtype = p.gradDtype ?? 'float32';
        if (gradRanks === undefined || (communicator.worldSize >= gradRanks && rank < gradRanks)) {
          fillGrad(p.grad, dtype, rank, s, k, scale);
        } else if (communicator.worldSize >= gradRanks) {
          p.grad.fill(0);
        } else {
          const g = new Float32Array(p.grad.length);
          for (let r = 0; r < gradRanks; r++) {
            fillGrad(g, 'float32', r, s, k, scale);
            for (let i = 0; i < g.length; i++)
              p.grad[i] = r === 0 ? g[i] : Math.fround(p.grad[i] + g[i]);
          }
        }
      }
      if (mutate === 'grad' && rank === 1 && s === 1) p0BadGrad(params);
      reports.push(zero.step(stepOptions));
      if (saveDir !== undefined && s === first + Math.floor(steps / 2) - 1) zero.save(saveDir);
    }
    post({ reports, memory: zero.memory() });
  } catch (error) {
    post({ error: { name: error.name, message: error.message } });
  }
}

function p0BadGrad(params) {
  params[0].grad = new Float32Array(3);
}
