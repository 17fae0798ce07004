// Checkpoints written by simd-adamw 0.1.0 load and resume bit for bit. The files and the expected
// results in test/fixtures/checkpoint-0.1.0/ were made by that version (see make.js there): an
// AdamW with two groups (named and unnamed params, amsgrad, a cosine schedule) and an Adam with L2
// decay and maximize. Each is loaded both ways (the static load and loadFrom), stepped twice with
// the recorded gradients, and compared with what 0.1.0 computed, as raw float32 bits.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Adam, type AdamBase, AdamW, cosineWithWarmup, type Param } from '../lib';
import { f32 } from './helpers/float32-state';

const FIXTURES = path.join(__dirname, 'fixtures', 'checkpoint-0.1.0');

interface Expected {
  lengths: number[];
  names: (string | null)[];
  paramsAtSave: string[];
  gradsAfterSave: string[][];
  paramsFinal: string[];
  stateFinal: { step: number; expAvg: string; expAvgSq: string; maxExpAvgSq?: string }[];
  lrFinal: number[];
}

function readExpected(name: string): Expected {
  return JSON.parse(
    fs.readFileSync(path.join(FIXTURES, `${name}.expected.json`), 'utf8'),
  ) as Expected;
}

function fromHex(text: string): Float32Array {
  const bytes = Buffer.from(text, 'hex');
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return new Float32Array(copy.buffer);
}

const hex = (array: Float32Array): string =>
  Buffer.from(array.buffer, array.byteOffset, array.byteLength).toString('hex');

function paramsAtSave(expected: Expected): Param[] {
  return expected.lengths.map((n, i) => {
    const param: Param = { data: fromHex(expected.paramsAtSave[i]!), grad: new Float32Array(n) };
    const name = expected.names[i];
    if (name !== null && name !== undefined) param.name = name;
    return param;
  });
}

function resumeAndCompare(expected: Expected, params: Param[], optimizer: AdamBase): void {
  for (const grads of expected.gradsAfterSave) {
    for (const [i, param] of params.entries()) param.grad.set(fromHex(grads[i]!));
    optimizer.step();
  }
  for (const [i, param] of params.entries()) {
    expect(hex(param.data)).toBe(expected.paramsFinal[i]);
    const state = f32(optimizer.state(param));
    const want = expected.stateFinal[i]!;
    expect(state.step).toBe(want.step);
    expect(hex(state.expAvg)).toBe(want.expAvg);
    expect(hex(state.expAvgSq)).toBe(want.expAvgSq);
    expect(state.maxExpAvgSq === undefined ? undefined : hex(state.maxExpAvgSq)).toBe(
      want.maxExpAvgSq,
    );
  }
  expect(optimizer.paramGroups.map((g) => g.lr)).toEqual(expected.lrFinal);
}

describe('an AdamW checkpoint written by 0.1.0', () => {
  const file = path.join(FIXTURES, 'adamw.safetensors');
  const expected = readExpected('adamw');

  test('AdamW.load resumes it bit for bit', () => {
    const params = paramsAtSave(expected);
    const optimizer = AdamW.load(file, params);
    expect(optimizer.schedulePosition).toBe(3);
    expect(optimizer.paramGroups[1]?.amsgrad).toBe(true);
    resumeAndCompare(expected, params, optimizer);
  });

  test('loadFrom into a matching optimizer resumes it bit for bit', () => {
    const params = paramsAtSave(expected);
    const optimizer = new AdamW(
      [{ params: [params[0]!, params[1]!] }, { params: [params[2]!, params[3]!], amsgrad: true }],
      { schedule: cosineWithWarmup({ warmupSteps: 2, totalSteps: 10, minLrRatio: 0.1 }) },
    );
    optimizer.loadFrom(file);
    expect(optimizer.paramGroups[1]?.weightDecay).toBe(0.1);
    expect(optimizer.paramGroups[1]?.betas).toEqual([0.8, 0.99]);
    resumeAndCompare(expected, params, optimizer);
  });

  test('loads as float32 state, the lean-state options at their defaults', () => {
    const params = paramsAtSave(expected);
    const optimizer = AdamW.load(file, params);
    expect(optimizer.paramGroups.map((group) => group.stateDtype)).toEqual(
      optimizer.paramGroups.map(() => 'float32'),
    );
    expect(params.map((p) => optimizer.state(p).dtype)).toEqual(params.map(() => 'float32'));
    expect([optimizer.stochasticRounding, optimizer.seed, optimizer.min8bitSize]).toEqual([
      false,
      0,
      4096,
    ]);
  });

  test('is refused by an optimizer with bfloat16 state, naming stateDtype', () => {
    // The file's groups, each with bfloat16 state.
    const groups = AdamW.load(file, paramsAtSave(expected)).paramGroups.map((group) => ({
      params: group.params.map((p) => ({ ...p, data: p.data.slice(), grad: p.grad.slice() })),
      stateDtype: 'bfloat16' as const,
    }));
    const optimizer = new AdamW(groups);
    expect(() => {
      optimizer.loadFrom(file);
    }).toThrow(
      /^Expected 'bfloat16' \(as this optimizer's paramGroups\[0\]; stateDtype decides which state exists\) for __metadata__\.param_groups\[0\]\.stateDtype of checkpoint .* but received 'float32' of type string$/,
    );
  });

  test('is refused by Adam, naming the kind', () => {
    expect(() => Adam.load(file, paramsAtSave(expected))).toThrow(/'adam'.*'adamw'|adamw/);
  });
});

describe('an Adam checkpoint written by 0.1.0', () => {
  const file = path.join(FIXTURES, 'adam.safetensors');
  const expected = readExpected('adam');

  test('Adam.load resumes it bit for bit', () => {
    const params = paramsAtSave(expected);
    const optimizer = Adam.load(file, params);
    expect(optimizer.paramGroups[0]?.maximize).toBe(true);
    resumeAndCompare(expected, params, optimizer);
  });

  test('a stateDict round trip of the loaded optimizer resumes it bit for bit', () => {
    const params = paramsAtSave(expected);
    const loaded = Adam.load(file, params);
    const copy = paramsAtSave(expected);
    const optimizer = new Adam(copy);
    optimizer.loadStateDict(loaded.stateDict());
    resumeAndCompare(expected, copy, optimizer);
  });
});
