#!/usr/bin/env node
'use strict';

/**
 * The linux-arm64 addon's checks, run by scripts/test-arm64.sh under qemu-aarch64 with an arm64
 * Node (plain node, no jest: jest under qemu takes minutes). Expects SIMD_ADAMW_NATIVE to name the
 * arm64 simd_adamw.node; loads the compiled library from $SIMD_ADAMW_LIB, else dist/lib. Exits 1
 * on any failure.
 *
 *   SIMD_ADAMW_NATIVE=prebuilds/linux-arm64/simd_adamw.node node scripts/arm64-check.js [repo root]
 *
 *  1. the process is arm64, and the addon loads with neon selected and neon + scalar available;
 *  2. every golden case (test/fixtures/golden, PyTorch 1.13 AdamW/Adam) within the tolerance of its
 *     README, through adamwStep and through the AdamW/Adam classes, on neon and on scalar (the
 *     checker is the one in test/helpers/golden.ts, written again in plain JS);
 *  3. neon and scalar bit for bit the same on random inputs (odd lengths, every option, NaN, Inf,
 *     subnormals and signed zeros in the gradient), including adamwStepAsync;
 *  4. Lion, Adafactor and CAME: every case of test/fixtures/golden-lean (their reference
 *     implementations under PyTorch 1.13) within the tolerance of its README, on neon and on
 *     scalar, and neon and scalar bit for bit the same on random shapes (Lion's three state
 *     dtypes, factored and 1-D Adafactor and CAME, 1 and 2 threads, stepAsync).
 */

const fs = require('fs');
const path = require('path');

// The repository root: the first argument, else this script's parent folder.
const ROOT = path.resolve(process.argv[2] ?? path.join(__dirname, '..'));
const GOLDEN_DIR = path.join(ROOT, 'test', 'fixtures', 'golden');
const { abs, sqrt } = Math;

let failures = 0;
function fail(message) {
  failures++;
  console.log(`FAIL ${message}`);
}

// ---- 1. the platform and the addon

if (process.arch !== 'arm64') {
  console.log(`FAIL process.arch is ${process.arch}, not arm64: not running under the arm64 node`);
  process.exit(1);
}
if (!process.env.SIMD_ADAMW_NATIVE) {
  console.log('FAIL SIMD_ADAMW_NATIVE is not set (the arm64 simd_adamw.node to test)');
  process.exit(1);
}
// SIMD_ADAMW_LIB: the compiled library to load (scripts/test-arm64.sh compiles lib/ afresh).
const lib = require(process.env.SIMD_ADAMW_LIB || path.join(ROOT, 'dist', 'lib'));
const { Adafactor, Adam, AdamW, CAME, Lion, adamwStep, adamwStepAsync, backend } = lib;
console.log(`node ${process.versions.node} (N-API ${process.versions.napi}) ${process.arch}`);
console.log(
  `backend: isa ${backend.isa}, available [${backend.available.join(', ')}], ` +
    `compiled [${backend.compiled.join(', ')}]`,
);
if (backend.isa !== 'neon') fail(`the addon picked ${backend.isa}, expected neon`);
for (const isa of ['neon', 'scalar']) {
  if (!backend.available.includes(isa)) fail(`${isa} is not in backend.available`);
}
if (failures > 0) process.exit(1);
const ISAS = ['neon', 'scalar'];

// ---- 2. golden vectors (test/helpers/golden.ts in plain JS)

const manifest = JSON.parse(fs.readFileSync(path.join(GOLDEN_DIR, 'cases.json'), 'utf8'));
if (manifest.format !== 'adam-golden-v1' || manifest.byte_order !== 'little') {
  throw new Error(`unexpected golden manifest format ${manifest.format}`);
}

function readF32(rel, expectedLength) {
  const bytes = fs.readFileSync(path.join(GOLDEN_DIR, rel));
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const values = new Float32Array(bytes.byteLength / 4);
  for (let i = 0; i < values.length; i++) values[i] = view.getFloat32(4 * i, true);
  if (bytes.byteLength % 4 !== 0 || values.length !== expectedLength) {
    throw new Error(`${rel}: ${bytes.byteLength} bytes, expected ${expectedLength} floats`);
  }
  return values;
}

function readCheckpoint(files, n) {
  const state = {};
  for (const [quantity, rel] of Object.entries(files)) state[quantity] = readF32(rel, n);
  return state;
}

const loaded = new Map();
function loadCase(c) {
  let data = loaded.get(c.name);
  if (data === undefined) {
    const lrs = c.lr_per_step ?? new Array(c.steps).fill(c.hyperparameters.lr);
    if (lrs.length !== c.steps) throw new Error(`${c.name}: lr_per_step has ${lrs.length} entries`);
    data = {
      params0: readF32(c.files.params0, c.n),
      grads: readF32(c.files.grads, c.steps * c.n),
      lrs,
      checkpoints: {
        step1: readCheckpoint(c.files.step1, c.n),
        final: readCheckpoint(c.files.final, c.n),
      },
    };
    loaded.set(c.name, data);
  }
  return data;
}

// Worst |actual - golden| / allowed over one quantity; allowed = (rtol + rtol_per_step * t) * scale
// (+ atol_lr * sum of lr for params); Infinity on NaN/Inf or a difference where allowed is 0.
function worstElement(quantity, actual, golden, t, lrSum) {
  const expected = golden[quantity];
  const tol = manifest.tolerance[quantity];
  const rtol = tol.rtol + tol.rtol_per_step * t;
  const atol = quantity === 'params' ? (tol.atol_lr ?? 0) * lrSum : 0;
  let worst = { ratio: 0, index: -1 };
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    if (!Number.isFinite(a)) return { ratio: Infinity, index: i };
    const diff = abs(a - e);
    if (diff === 0) continue;
    const scale = quantity === 'exp_avg' ? abs(e) + sqrt(golden.exp_avg_sq[i]) : abs(e);
    const ratio = diff / (rtol * scale + atol);
    if (Number.isNaN(ratio)) return { ratio: Infinity, index: i };
    if (ratio > worst.ratio) worst = { ratio, index: i };
  }
  return worst;
}

function runGoldenCase(c, stepFn) {
  const golden = loadCase(c);
  const state = {
    params: golden.params0.slice(),
    exp_avg: new Float32Array(c.n),
    exp_avg_sq: new Float32Array(c.n),
    max_exp_avg_sq: new Float32Array(c.n),
  };
  const result = { worst: 0, where: '' };
  let lrSum = 0;
  for (let t = 1; t <= c.steps; t++) {
    const lr = golden.lrs[t - 1];
    lrSum += lr;
    stepFn(state, golden.grads.subarray((t - 1) * c.n, t * c.n), t, lr);
    const checkpoints = [];
    if (t === 1) checkpoints.push('step1');
    if (t === c.steps) checkpoints.push('final');
    for (const checkpoint of checkpoints) {
      for (const quantity of Object.keys(c.files[checkpoint])) {
        const found = worstElement(
          quantity,
          state[quantity],
          golden.checkpoints[checkpoint],
          t,
          lrSum,
        );
        if (result.where === '' || found.ratio > result.worst) {
          result.worst = found.ratio;
          result.where = `${checkpoint} (t=${t}) ${quantity}[${found.index}]`;
        }
      }
    }
  }
  return result;
}

function functionalStep(c) {
  const h = c.hyperparameters;
  return (state, grad, t, lr) => {
    adamwStep(state.params, grad, state.exp_avg, state.exp_avg_sq, {
      step: t,
      lr,
      beta1: h.beta1,
      beta2: h.beta2,
      eps: h.eps,
      weightDecay: h.weight_decay,
      maximize: h.maximize,
      decoupled: c.optimizer === 'adamw',
      ...(h.amsgrad ? { maxExpAvgSq: state.max_exp_avg_sq } : {}),
    });
  };
}

function classStep(c) {
  const h = c.hyperparameters;
  let optimizer;
  let param;
  return (state, grad, t, lr) => {
    if (optimizer === undefined) {
      param = { data: state.params, grad };
      const Optimizer = c.optimizer === 'adamw' ? AdamW : Adam;
      optimizer = new Optimizer([param], {
        lr,
        betas: [h.beta1, h.beta2],
        eps: h.eps,
        weightDecay: h.weight_decay,
        amsgrad: h.amsgrad,
        maximize: h.maximize,
      });
    }
    param.grad = grad;
    optimizer.paramGroups[0].lr = lr;
    optimizer.step();
    const s = optimizer.state(param);
    if (s.step !== t) throw new Error(`optimizer state step ${s.step}, expected ${t}`);
    state.exp_avg.set(s.expAvg);
    state.exp_avg_sq.set(s.expAvgSq);
    if (s.maxExpAvgSq !== undefined) state.max_exp_avg_sq.set(s.maxExpAvgSq);
  };
}

for (const isa of ISAS) {
  backend.setIsa(isa);
  if (backend.isa !== isa) fail(`setIsa('${isa}') left isa ${backend.isa}`);
  let passed = 0;
  let worstOfAll = 0;
  for (const c of manifest.cases) {
    for (const [api, makeStep] of [
      ['adamwStep', functionalStep],
      ['class API', classStep],
    ]) {
      let result;
      try {
        result = runGoldenCase(c, makeStep(c));
      } catch (error) {
        fail(`golden ${isa} ${c.name} ${api}: ${error && error.stack ? error.stack : error}`);
        continue;
      }
      if (result.worst <= 1) {
        passed++;
        worstOfAll = Math.max(worstOfAll, result.worst);
      } else {
        fail(`golden ${isa} ${c.name} ${api}: ratio ${result.worst} at ${result.where}`);
      }
    }
  }
  console.log(
    `golden on ${isa}: ${passed}/${2 * manifest.cases.length} within tolerance ` +
      `(${manifest.cases.length} cases x adamwStep, class API; worst ratio ${worstOfAll.toFixed(3)})`,
  );
}

// ---- 3. neon vs scalar, bit for bit

// xorshift32: the same inputs on every run.
let seed = 0x9e3779b9;
function random() {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 4294967296;
}
const SPECIAL = [NaN, Infinity, -Infinity, 0, -0, 1e-40, -1e-42, 3.4e38, -3.4e38, 1e-30];

function randomArray(n, scale, specials) {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a[i] =
      specials && random() < 0.02
        ? SPECIAL[Math.floor(random() * SPECIAL.length)]
        : (random() * 2 - 1) * scale * 10 ** Math.floor(random() * 7 - 3);
  }
  return a;
}

function sameBits(a, b) {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

function makeInputs(n, specials) {
  const grads = [
    randomArray(n, 1, specials),
    randomArray(n, 1, specials),
    randomArray(n, 1, specials),
  ];
  return {
    param: randomArray(n, 1, false),
    expAvg: randomArray(n, 0.1, false),
    expAvgSq: randomArray(n, 0.01, false).map(abs),
    maxExpAvgSq: randomArray(n, 0.01, false).map(abs),
    grads,
  };
}

function cloneState(inputs) {
  return {
    param: inputs.param.slice(),
    expAvg: inputs.expAvg.slice(),
    expAvgSq: inputs.expAvgSq.slice(),
    maxExpAvgSq: inputs.maxExpAvgSq.slice(),
  };
}

function optionsFor(variant, s, t) {
  return {
    step: t,
    lr: variant.lr,
    beta1: 0.9,
    beta2: variant.beta2,
    eps: variant.eps,
    weightDecay: variant.weightDecay,
    maximize: variant.maximize,
    decoupled: variant.decoupled,
    threads: variant.threads,
    ...(variant.amsgrad ? { maxExpAvgSq: s.maxExpAvgSq } : {}),
  };
}

async function runSteps(isa, variant, inputs, useAsync) {
  backend.setIsa(isa);
  const s = cloneState(inputs);
  for (let t = 1; t <= inputs.grads.length; t++) {
    const options = optionsFor(variant, s, t + 4);
    const grad = inputs.grads[t - 1];
    if (useAsync) await adamwStepAsync(s.param, grad, s.expAvg, s.expAvgSq, options);
    else adamwStep(s.param, grad, s.expAvg, s.expAvgSq, options);
  }
  return s;
}

const LENGTHS = [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 127, 1000, 4099, 65537];
const VARIANTS = [
  { name: 'adamw', decoupled: true, weightDecay: 0.01, amsgrad: false, maximize: false },
  { name: 'adam-l2', decoupled: false, weightDecay: 0.1, amsgrad: false, maximize: false },
  { name: 'adam', decoupled: false, weightDecay: 0, amsgrad: false, maximize: false },
  { name: 'amsgrad', decoupled: true, weightDecay: 0.01, amsgrad: true, maximize: false },
  { name: 'maximize', decoupled: true, weightDecay: 0.01, amsgrad: true, maximize: true },
];

async function bitwise() {
  let compared = 0;
  let elements = 0;
  for (const n of LENGTHS) {
    for (const [v, base] of VARIANTS.entries()) {
      for (const specials of [false, true]) {
        const variant = {
          ...base,
          lr: [1e-3, 3e-4, 0.1][v % 3],
          beta2: [0.999, 0.95, 0.9999][(v + n) % 3],
          eps: [1e-8, 1e-6][n % 2],
          threads: n >= 4099 ? [1, 2, 4][v % 3] : 1,
        };
        const useAsync = (n + v) % 4 === 0;
        const inputs = makeInputs(n, specials);
        const neon = await runSteps('neon', variant, inputs, useAsync);
        const scalar = await runSteps('scalar', variant, inputs, false);
        for (const key of ['param', 'expAvg', 'expAvgSq', 'maxExpAvgSq']) {
          const at = sameBits(neon[key], scalar[key]);
          if (at >= 0) {
            fail(
              `bitwise n=${n} ${variant.name}${specials ? ' +specials' : ''}` +
                `${useAsync ? ' (neon async)' : ''} threads=${variant.threads}: ${key}[${at}] ` +
                `neon ${neon[key][at]} scalar ${scalar[key][at]}`,
            );
            break;
          }
        }
        compared++;
        elements += n;
      }
    }
  }
  console.log(
    `neon vs scalar: ${compared} runs of 3 steps (${elements} elements per quantity, ` +
      `${LENGTHS.length} lengths, ${VARIANTS.length} variants, with and without NaN/Inf/subnormal ` +
      'grads, some through adamwStepAsync) compared bit for bit',
  );
}

// ---- 4. Lion, Adafactor and CAME (test/fixtures/golden-lean; its README's checker in plain JS)

const LEAN_DIR = path.join(ROOT, 'test', 'fixtures', 'golden-lean');
const LEAN_CLASSES = { lion: Lion, adafactor: Adafactor, came: CAME };

function leanTolRatio(tq, a, e, t, lrSum) {
  if (!a || a.length !== e.length) return Infinity;
  const r = tq.rtol + (tq.rtol_per_step || 0) * t;
  let rms = 0;
  if (tq.scale === 'abs_plus_rms') {
    let sum = 0;
    for (const x of e) sum += x * x;
    rms = sqrt(sum / e.length);
  }
  const atol = tq.atol_lr !== undefined ? tq.atol_lr * lrSum : 0;
  let worst = 0;
  for (let i = 0; i < e.length; i++) {
    if (!Number.isFinite(a[i])) return Infinity;
    const d = abs(a[i] - e[i]);
    if (d !== 0) worst = Math.max(worst, d / (r * (abs(e[i]) + rms) + atol));
  }
  return worst;
}

function readLeanF32(rel) {
  const bytes = fs.readFileSync(path.join(LEAN_DIR, rel));
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const values = new Float32Array(bytes.byteLength / 4);
  for (let i = 0; i < values.length; i++) values[i] = view.getFloat32(4 * i, true);
  return values;
}

function leanGolden() {
  const lean = JSON.parse(fs.readFileSync(path.join(LEAN_DIR, 'cases.json'), 'utf8'));
  for (const isa of ISAS) {
    backend.setIsa(isa);
    let passed = 0;
    let worstOfAll = 0;
    for (const c of lean.cases) {
      const { n, steps } = c;
      const lrTol =
        c.effective_lr_per_step ?? c.lr_per_step ?? Array(steps).fill(c.hyperparameters.lr);
      const param = {
        data: readLeanF32(c.files.params0),
        grad: new Float32Array(n),
        shape: c.shape,
      };
      const grads = readLeanF32(c.files.grads);
      const lr = c.lr_per_step ? c.lr_per_step[0] : c.api_options.lr;
      const optimizer = new LEAN_CLASSES[c.optimizer]([param], {
        ...c.api_options,
        lr,
        threads: 2,
      });
      let lrSum = 0;
      let worst = 0;
      for (let t = 1; t <= steps; t++) {
        param.grad.set(grads.subarray((t - 1) * n, t * n));
        if (c.lr_per_step) optimizer.paramGroups[0].lr = c.lr_per_step[t - 1];
        optimizer.step();
        lrSum += lrTol[t - 1];
        const state = optimizer.state(param);
        if (state.step !== t) worst = Infinity;
        if (t !== 1 && t !== steps) continue;
        const checkpoint = t === 1 ? c.files.step1 : c.files.final;
        for (const [quantity, rel] of Object.entries(checkpoint)) {
          const actual = quantity === 'params' ? param.data : state[lean.state_names[quantity]];
          const tq = lean.tolerance[c.optimizer][quantity];
          worst = Math.max(worst, leanTolRatio(tq, actual, readLeanF32(rel), t, lrSum));
        }
      }
      if (worst <= 1) {
        passed++;
        worstOfAll = Math.max(worstOfAll, worst);
      } else {
        fail(`golden-lean ${isa} ${c.name}: ratio ${worst}`);
      }
    }
    console.log(
      `golden-lean on ${isa}: ${passed}/${lean.cases.length} within tolerance ` +
        `(Lion, Adafactor, CAME; worst ratio ${worstOfAll.toFixed(3)})`,
    );
  }
}

const LEAN_VARIANTS = [
  { Class: Lion, options: { lr: 3e-4, weightDecay: 0.1 }, shapes: [[1], [17], [4099], [300, 33]] },
  {
    Class: Lion,
    options: { stateDtype: 'bfloat16', stochasticRounding: true, seed: 7, maximize: true },
    shapes: [[33], [5000]],
  },
  { Class: Lion, options: { stateDtype: 'blockwise8', min8bitSize: 0 }, shapes: [[255], [4097]] },
  {
    Class: Adafactor,
    options: {},
    shapes: [[65], [64, 48], [3, 16, 24], [1, 33], [33, 1], [200, 301]],
  },
  { Class: Adafactor, options: { beta1: 0.9, weightDecay: 0.01 }, shapes: [[1000], [40, 40]] },
  { Class: CAME, options: { weightDecay: 0.01 }, shapes: [[17], [64, 48], [2, 130, 70], [20000]] },
];

async function leanBitwise() {
  let runs = 0;
  for (const [v, variant] of LEAN_VARIANTS.entries()) {
    for (const threads of [1, 2]) {
      const results = [];
      for (const isa of ISAS) {
        backend.setIsa(isa);
        seed = 0x1234567 + v;
        const params = variant.shapes.map((shape) => {
          const n = shape.reduce((p, d) => p * d, 1);
          return { data: randomArray(n, 0.05, false), grad: new Float32Array(n), shape };
        });
        const optimizer = new variant.Class(params, { ...variant.options, threads });
        for (let t = 0; t < 3; t++) {
          for (const p of params) p.grad.set(randomArray(p.data.length, 0.01, t === 2));
          if ((t + v) % 2 === 0) await optimizer.stepAsync();
          else optimizer.step();
        }
        results.push(
          params.map((p) => [
            p.data.slice(),
            ...Object.values(optimizer.stateFloat32(p)).filter((x) => x instanceof Float32Array),
          ]),
        );
      }
      const [neon, scalar] = results;
      for (const [k, arrays] of neon.entries()) {
        for (const [i, array] of arrays.entries()) {
          const at = sameBits(array, scalar[k][i]);
          if (at >= 0) {
            fail(
              `lean bitwise ${variant.Class.name} variant ${v} threads ${threads} param ${k} array ${i}[${at}]`,
            );
          }
        }
      }
      runs++;
    }
  }
  console.log(`lean optimizers neon vs scalar: ${runs} runs of 3 steps compared bit for bit`);
}

bitwise()
  .then(() => {
    leanGolden();
    return leanBitwise();
  })
  .then(() => {
    backend.setIsa('neon');
    if (failures > 0) {
      console.log(`arm64 check: ${failures} failure(s)`);
      process.exit(1);
    }
    console.log('arm64 check: all passed');
  })
  .catch((error) => {
    console.log(`FAIL ${error && error.stack ? error.stack : error}`);
    process.exit(1);
  });
