// saveTraining / loadTraining (lib/checkpoint/training.ts): one file holds the weights, the
// optimizer's state and schedule, the grad scaler and the user's JSON; a run resumed from it
// continues bit for bit; loading is all or nothing; the file is plain safetensors.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import {
  AdamW,
  cosineWithWarmup,
  GradScaler,
  loadTraining,
  type Param,
  SafetensorsError,
  saveTraining,
} from '../lib';

let folder: string;
beforeAll(() => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'simd-adamw-training-'));
});
afterAll(() => {
  fs.rmSync(folder, { recursive: true, force: true });
});
let counter = 0;
function tempPath(): string {
  counter += 1;
  return path.join(folder, `run${counter}.safetensors`);
}

const NAMES = ['layer.weight', 'layer.bias', 'head.weight'];
const LENGTHS = [12, 3, 6];

function makeRun(): { params: Param[]; optimizer: AdamW; scaler: GradScaler } {
  const params = LENGTHS.map((length, k) => ({
    name: NAMES[k],
    data: Float32Array.from({ length }, (_, i) => Math.sin(k * 31 + i)),
    grad: new Float32Array(length),
  }));
  const optimizer = new AdamW(
    [
      { params: params.slice(0, 2), lr: 0.01, weightDecay: 0.1 },
      { params: params.slice(2), lr: 0.003 },
    ],
    { schedule: cosineWithWarmup({ warmupSteps: 2, totalSteps: 20, minLrRatio: 0.1 }) },
  );
  const scaler = new GradScaler({ initScale: 1024, growthInterval: 3 });
  return { params, optimizer, scaler };
}

/** `steps` steps from `from`, the loss scaled: gradients depend on the step and the weights. */
function train(run: ReturnType<typeof makeRun>, from: number, steps: number): void {
  for (let step = from; step < from + steps; step++) {
    for (const [k, param] of run.params.entries()) {
      for (let i = 0; i < param.data.length; i++) {
        const overflow = step % 5 === 1 && k === 0 && i === 0;
        param.grad![i] = overflow
          ? Infinity
          : run.scaler.scale * (param.data[i]! * 0.5 + Math.cos(step + i));
      }
    }
    run.scaler.step(run.optimizer);
  }
}

function weightsOf(params: Param[]): Record<string, Float32Array> {
  return Object.fromEntries(params.map((param) => [param.name!, param.data]));
}

it('a run resumed from its file continues bit for bit', () => {
  const reference = makeRun();
  train(reference, 0, 9);

  const first = makeRun();
  train(first, 0, 4);
  const file = tempPath();
  const extra = { epoch: 2, history: [0.5, 0.25], best: { loss: 0.125, at: null }, tag: 'x' };
  saveTraining(file, {
    weights: weightsOf(first.params),
    optimizer: first.optimizer,
    gradScaler: first.scaler,
    extra,
  });

  const resumed = makeRun();
  const loaded = loadTraining(file, { optimizer: resumed.optimizer, gradScaler: resumed.scaler });
  expect(loaded.extra).toEqual(extra);
  expect(Object.keys(loaded.weights).sort()).toEqual([...NAMES].sort());
  for (const param of resumed.params) {
    const weight = loaded.weights[param.name!]!;
    expect(weight.dtype).toBe('float32');
    param.data.set(weight.data as Float32Array);
  }
  expect(resumed.optimizer.stateDict()).toEqual(first.optimizer.stateDict());
  expect(resumed.scaler.stateDict()).toEqual(first.scaler.stateDict());
  train(resumed, 4, 5);
  for (const [k, param] of resumed.params.entries())
    expect(param.data).toEqual(reference.params[k]!.data);
  expect(resumed.optimizer.stateDict()).toEqual(reference.optimizer.stateDict());
  expect(resumed.scaler.stateDict()).toEqual(reference.scaler.stateDict());
});

it('the file is safetensors: weights/ and optimizer/ tensors, aligned, with the metadata', () => {
  const run = makeRun();
  train(run, 0, 2);
  const file = tempPath();
  saveTraining(file, {
    weights: { ...weightsOf(run.params), mask: Uint8Array.from([1, 0]) },
    optimizer: run.optimizer,
  });
  const bytes = fs.readFileSync(file);
  const length = Number(bytes.readBigUInt64LE(0));
  expect(length % 8).toBe(0);
  const header = JSON.parse(bytes.subarray(8, 8 + length).toString('utf8')) as Record<
    string,
    { dtype: string; data_offsets: number[] }
  > & { __metadata__: Record<string, string> };
  const metadata = header.__metadata__;
  expect(metadata.format).toBe('simd-adamw.training');
  expect(metadata.format_version).toBe('1');
  expect(metadata['optimizer/format']).toBe('simd-adamw.optimizer');
  expect(metadata['optimizer/optimizer']).toBe('adamw');
  expect(JSON.parse(metadata['optimizer/param_names']!)).toEqual(NAMES);
  expect(metadata.grad_scaler).toBeUndefined();
  expect(metadata.extra).toBeUndefined();
  const names = Object.keys(header).filter((name) => name !== '__metadata__');
  expect(names.filter((name) => name.startsWith('weights/')).sort()).toEqual([
    'weights/head.weight',
    'weights/layer.bias',
    'weights/layer.weight',
    'weights/mask',
  ]);
  expect(names).toContain('optimizer/state.layer.weight.exp_avg');
  expect(names.every((name) => name.startsWith('weights/') || name.startsWith('optimizer/'))).toBe(
    true,
  );
  const sizes: Record<string, number> = { I64: 8, F32: 4, U8: 1 };
  let end = 0;
  for (const name of names) {
    const [begin, stop] = header[name]!.data_offsets as [number, number];
    expect(begin).toBe(end);
    expect((8 + length + begin) % sizes[header[name]!.dtype]!).toBe(0);
    end = stop;
  }
  expect(8 + length + end).toBe(bytes.length);
  const loaded = loadTraining(file, { optimizer: makeRun().optimizer });
  expect(loaded.extra).toBeUndefined();
  expect(loaded.weights.mask).toEqual({
    dtype: 'uint8',
    shape: [2],
    data: Uint8Array.from([1, 0]),
  });
});

describe('loading is all or nothing', () => {
  function savedFile(): string {
    const run = makeRun();
    train(run, 0, 3);
    const file = tempPath();
    saveTraining(file, {
      weights: weightsOf(run.params),
      optimizer: run.optimizer,
      gradScaler: run.scaler,
      extra: [1],
    });
    return file;
  }

  it.each([
    [
      'without the gradScaler the file holds',
      (file: string, run: ReturnType<typeof makeRun>) =>
        loadTraining(file, { optimizer: run.optimizer }),
      /^Expected a GradScaler for into\.gradScaler but received undefined \(training file '.*' holds a GradScaler's state\)$/,
    ],
    [
      'a gradScaler for a file without its state',
      (file: string, run: ReturnType<typeof makeRun>) => {
        saveTraining(file, { weights: weightsOf(run.params), optimizer: run.optimizer });
        loadTraining(file, { optimizer: run.optimizer, gradScaler: run.scaler });
      },
      /^Expected a GradScaler's state for __metadata__\.grad_scaler of training file '.*' but received nothing \(into\.gradScaler was given\)$/,
    ],
    [
      'into an optimizer of other params',
      (file: string) => {
        const other = new AdamW([
          { name: 'x', data: new Float32Array(3), grad: new Float32Array(3) },
        ]);
        loadTraining(file, { optimizer: other, gradScaler: new GradScaler() });
      },
      /Expected/,
    ],
    [
      'a corrupt byte in the optimizer state',
      (file: string, run: ReturnType<typeof makeRun>) => {
        const bytes = fs.readFileSync(file);
        bytes[bytes.length - 5] ^= 0x40;
        fs.writeFileSync(file, bytes);
        loadTraining(file, { optimizer: run.optimizer, gradScaler: run.scaler });
      },
      /the file is corrupt/,
    ],
    [
      'a file of optimizer.save()',
      (file: string, run: ReturnType<typeof makeRun>) => {
        run.optimizer.save(file);
        loadTraining(file, { optimizer: run.optimizer, gradScaler: run.scaler });
      },
      /^Expected 'simd-adamw\.training' \(a file of saveTraining\) for __metadata__\.format of training file/,
    ],
  ])('%s: an error, the optimizer and scaler unchanged', (_, act, message) => {
    const file = savedFile();
    const run = makeRun();
    train(run, 0, 1);
    const optimizerBefore = run.optimizer.stateDict();
    const scalerBefore = run.scaler.stateDict();
    expect(() => act(file, run)).toThrow(message);
    expect(run.optimizer.stateDict()).toEqual(optimizerBefore);
    expect(run.scaler.stateDict()).toEqual(scalerBefore);
  });

  it('a corrupt file is a SafetensorsError', () => {
    const file = savedFile();
    const bytes = fs.readFileSync(file);
    bytes[bytes.length - 1] ^= 1;
    fs.writeFileSync(file, bytes);
    const run = makeRun();
    expect(() => loadTraining(file, { optimizer: run.optimizer, gradScaler: run.scaler })).toThrow(
      SafetensorsError,
    );
  });
});

describe('bad input to saveTraining throws before anything is written', () => {
  const run = makeRun();
  it.each([
    [
      'no optimizer',
      { weights: {} },
      /^Expected an optimizer of this package \(AdamW, Adam, \.\.\.\) for run\.optimizer but received undefined$/,
      TypeError,
    ],
    [
      'a bad weight',
      { weights: { w: [1, 2] }, optimizer: run.optimizer },
      /for run\.weights\["w"\] but received an Array/,
      TypeError,
    ],
    [
      'a scaler that is not one',
      { weights: {}, optimizer: run.optimizer, gradScaler: {} },
      /^Expected a GradScaler or undefined for run\.gradScaler/,
      TypeError,
    ],
    [
      'extra with a function',
      { weights: {}, optimizer: run.optimizer, extra: { f: () => 1 } },
      /^Expected a JSON value .* for run\.extra\["f"\] but received a function$/,
      TypeError,
    ],
    [
      'extra with NaN',
      { weights: {}, optimizer: run.optimizer, extra: [NaN] },
      /^Expected a finite number \(JSON has no other\) for run\.extra\[0\]/,
      RangeError,
    ],
    [
      'extra with a Date',
      { weights: {}, optimizer: run.optimizer, extra: new Date(0) },
      /for run\.extra but received a Date$/,
      TypeError,
    ],
    [
      'an unknown key',
      { weights: {}, optimizer: run.optimizer, schedule: 1 },
      /^Expected one of weights, optimizer, gradScaler, extra for the key run\.schedule but received an unknown key$/,
      TypeError,
    ],
  ])('%s', (_, value, message, type) => {
    const file = tempPath();
    expect(() => saveTraining(file, value as never)).toThrow(message);
    expect(() => saveTraining(file, value as never)).toThrow(type);
    expect(fs.existsSync(file)).toBe(false);
  });
});
