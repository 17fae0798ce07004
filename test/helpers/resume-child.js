// One leg of the resume test in test/checkpoint.test.ts, run as its own Node process against the
// built package (dist/). It trains a small model deterministically, optionally starting from a
// checkpoint and saved weights, and prints the final weights and optimizer state as base64.
//
//   node resume-child.js '{"optimizer":"adamw","from":0,"steps":7,"save":"x.safetensors",...}'
//
// Fields: optimizer ('adamw' | 'adam'); from (index of the first step, for the gradients and the
// lr schedule); steps; load (checkpoint to resume from, with weightsIn); weightsIn / weightsOut
// (raw float32 weights); save (write a checkpoint at the end); freshState (resume the weights but
// not the optimizer state, to show that the state matters).
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const { Adam, AdamW } = require(path.join(__dirname, '..', '..', 'dist', 'lib', 'index.js'));

const config = JSON.parse(process.argv[2]);
const Optimizer = config.optimizer === 'adam' ? Adam : AdamW;

// A hash of (step, param, index) in [-1, 1): the same gradient noise in every process.
function noise(step, k, i) {
  let h = Math.imul(step + 1, 0x9e3779b1) ^ Math.imul(k + 7, 0x85ebca6b) ^ Math.imul(i, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d);
  h = Math.imul(h ^ (h >>> 12), 0x297a2d39);
  return ((h ^ (h >>> 15)) >>> 0) / 2 ** 31 - 1;
}

const lengths = [33, 1, 1000, 17, 4099];
const names = ['embed.weight', undefined, 'block.0.weight', 'block.0.bias', undefined];
const params = lengths.map((length, k) => {
  const param = { data: new Float32Array(length), grad: new Float32Array(length) };
  if (names[k] !== undefined) param.name = names[k];
  for (let i = 0; i < length; i++) param.data[i] = noise(-1, k, i);
  return param;
});
if (config.weightsIn !== undefined) {
  const weights = fs.readFileSync(config.weightsIn);
  let offset = 0;
  for (const param of params) {
    weights.copy(Buffer.from(param.data.buffer), 0, offset, offset + param.data.byteLength);
    offset += param.data.byteLength;
  }
}

const baseLrs = [3e-3, 1e-2];
let optimizer;
if (config.load !== undefined && config.freshState !== true) {
  optimizer = Optimizer.load(config.load, params);
} else {
  optimizer = new Optimizer(
    [
      { params: params.slice(0, 3), lr: baseLrs[0], weightDecay: 0.1, betas: [0.9, 0.95] },
      { params: params.slice(3), lr: baseLrs[1], amsgrad: true, maximize: true, eps: 1e-6 },
    ],
    { weightDecay: 0.01 },
  );
}

for (let step = config.from; step < config.from + config.steps; step++) {
  // A loss pulling the weights towards 0 plus noise: gradients depend on the weights themselves.
  for (const [k, param] of params.entries()) {
    for (let i = 0; i < param.data.length; i++) {
      param.grad[i] = 0.5 * param.data[i] + noise(step, k, i) * (k === 3 ? 1e3 : 1);
    }
  }
  const schedule = 0.5 * (1 + Math.cos((Math.PI * step) / 40));
  optimizer.paramGroups.forEach((group, g) => {
    group.lr = baseLrs[g] * schedule;
  });
  optimizer.step();
}

if (config.save !== undefined) optimizer.save(config.save);
const weights = Buffer.concat(params.map((p) => Buffer.from(p.data.buffer)));
if (config.weightsOut !== undefined) fs.writeFileSync(config.weightsOut, weights);

const state = params.map((param) => {
  const s = optimizer.state(param);
  const arrays = [s.expAvg, s.expAvgSq, ...(s.maxExpAvgSq === undefined ? [] : [s.maxExpAvgSq])];
  return {
    step: s.step,
    bytes: Buffer.concat(arrays.map((a) => Buffer.from(a.buffer))).toString('base64'),
  };
});
process.stdout.write(JSON.stringify({ weights: weights.toString('base64'), state }));
