#!/usr/bin/env node
// Run by scripts/test-package.sh: loads simd-adamw (the first argument: a package name, resolved
// from the current directory, or a path), optionally checks that it loaded the prebuilt binary,
// runs a fixed set of steps (AdamW and Adam, amsgrad, maximize, weight decay, the fused clip and
// unscale, every kernel this CPU runs, 1 and 2 threads) and prints every result as float32 bits,
// so two installs can be compared byte for byte.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const [target, flag] = process.argv.slice(2);
const entry = require.resolve(target, { paths: [process.cwd()] });
const simd = require(entry);

if (flag === '--expect-prebuild') {
  const root = path.dirname(require.resolve(`${target}/package.json`, { paths: [process.cwd()] }));
  const prebuild = path.join(
    root,
    'prebuilds',
    `${process.platform}-${process.arch}`,
    'simd_adamw.node',
  );
  const loaded = Object.keys(require.cache).filter((file) => file.endsWith('.node'));
  if (fs.existsSync(path.join(root, 'build')) || !loaded.includes(prebuild)) {
    console.error(`expected ${prebuild} to be loaded; loaded: ${loaded.join(', ') || 'none'}`);
    process.exit(1);
  }
}

function filled(length, seed) {
  let x = seed >>> 0;
  const array = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    array[i] = (x / 2 ** 32 - 0.5) * 0.2;
  }
  return array;
}
const hex = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');

const results = {};
const cases = [
  ['adamw', simd.AdamW, { lr: 1e-2 }, undefined],
  [
    'adamw-amsgrad-maximize',
    simd.AdamW,
    { amsgrad: true, maximize: true, weightDecay: 0.1 },
    undefined,
  ],
  ['adam-l2', simd.Adam, { lr: 3e-3, weightDecay: 0.05, betas: [0.8, 0.99] }, undefined],
  ['adamw-clip-unscale', simd.AdamW, {}, { clipGradNorm: 0.05, gradScale: 1024 }],
];
for (const isa of simd.backend.available) {
  simd.backend.setIsa(isa);
  for (const threads of [1, 2]) {
    for (const [name, Optimizer, options, stepOptions] of cases) {
      const params = [17, 4099, 70000].map((n, k) => ({
        data: filled(n, k + 1),
        grad: filled(n, k + 11),
      }));
      const optimizer = new Optimizer(params, { ...options, threads });
      for (let s = 0; s < 3; s++) optimizer.step(stepOptions);
      results[`${isa}/${threads}/${name}`] = params.map((p) => {
        const st = optimizer.state(p);
        return [hex(p.data), hex(st.expAvg), hex(st.expAvgSq)].join(':');
      });
    }
  }
}
// The kernels must agree with each other too: one set of results per case.
const byCase = new Map();
for (const [key, value] of Object.entries(results)) {
  const name = key.split('/')[2];
  const first = byCase.get(name);
  if (first === undefined) byCase.set(name, JSON.stringify(value));
  else if (first !== JSON.stringify(value)) {
    console.error(`${key} differs from another kernel or thread count`);
    process.exit(1);
  }
}
process.stdout.write(JSON.stringify(results) + '\n');
