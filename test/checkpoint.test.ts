// Checkpoints (docs/checkpoints.md): stateDict/loadStateDict and save/load/loadFrom restore an
// optimizer bit for bit, so that resuming (even in a new process) continues exactly as if training
// had not stopped; anything that does not fit, and any damaged file, is an error that changes
// nothing; an interrupted save leaves the previous checkpoint loadable.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';

import {
  Adam,
  AdamW,
  type AdamBase,
  type OptimizerStateDict,
  type Param,
  type ParamGroup,
  SafetensorsError,
} from '../lib';
import { saveCheckpoint } from '../lib/checkpoint/file';
import { optimizerInternals } from '../lib/optim/optimizer';
import { type FileOps, nodeFileOps } from '../lib/format/safetensors';
import { f32 } from './helpers/float32-state';

/** The bytes of a typed array's own elements (a state tensor is a view into a larger buffer). */
function viewBytes(array: Float32Array): Buffer {
  return Buffer.from(array.buffer, array.byteOffset, array.byteLength);
}

let folder: string;
beforeAll(() => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'simd-adamw-checkpoint-'));
});
afterAll(() => {
  fs.rmSync(folder, { recursive: true, force: true });
});

let fileCount = 0;
function tempPath(): string {
  return path.join(folder, `checkpoint-${fileCount++}.safetensors`);
}

// ---------------------------------------------------------------------------------------------
// A small model: named and unnamed params, two groups (the second with amsgrad and maximize).

function noise(seed: number, k: number, i: number): number {
  let h = Math.imul(seed + 1, 0x9e3779b1) ^ Math.imul(k + 7, 0x85ebca6b) ^ Math.imul(i, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d);
  return ((h ^ (h >>> 13)) >>> 0) / 2 ** 31 - 1;
}

const LENGTHS = [5, 17, 1, 3];
const NAMES: (string | undefined)[] = ['w.0', undefined, 'b.0', 'ln.γ'];

function makeParams(lengths = LENGTHS, names = NAMES): Param[] {
  return lengths.map((length, k) => {
    const param: Param = { data: new Float32Array(length), grad: new Float32Array(length) };
    const name = names[k];
    if (name !== undefined) param.name = name;
    for (let i = 0; i < length; i++) param.data[i] = noise(-1, k, i);
    return param;
  });
}

function groupsOf(params: Param[]): ParamGroup[] {
  return [
    { params: params.slice(0, 2), lr: 0.01, betas: [0.8, 0.99], weightDecay: 0.1 },
    { params: params.slice(2), lr: 0.003, amsgrad: true, maximize: true, eps: 1e-6 },
  ];
}

function makeOptimizer(kind: 'adamw' | 'adam' = 'adamw', params = makeParams()): AdamBase {
  return kind === 'adamw' ? new AdamW(groupsOf(params)) : new Adam(groupsOf(params));
}

/** `steps` steps from step index `from`, with gradients that depend on the weights. */
function train(optimizer: AdamBase, from: number, steps: number): void {
  const params = optimizer.paramGroups.flatMap((group) => group.params);
  for (let step = from; step < from + steps; step++) {
    params.forEach((param, k) => {
      for (let i = 0; i < param.data.length; i++) {
        param.grad[i] = 0.3 * param.data[i]! + noise(step, k, i);
      }
    });
    optimizer.step();
  }
}

function trained(steps: number, kind: 'adamw' | 'adam' = 'adamw'): AdamBase {
  const optimizer = makeOptimizer(kind);
  train(optimizer, 0, steps);
  return optimizer;
}

function bits(array: Float32Array): number[] {
  return Array.from(new Uint32Array(array.buffer, array.byteOffset, array.length));
}

/** Everything observable about an optimizer, with floats as bit patterns and -0 kept. */
function fingerprint(optimizer: AdamBase): string {
  return JSON.stringify(
    {
      groups: optimizer.paramGroups.map((group) => [
        group.lr,
        group.betas,
        group.eps,
        group.weightDecay,
        group.amsgrad,
        group.maximize,
      ]),
      params: optimizer.paramGroups.flatMap((group) =>
        group.params.map((param) => {
          const state = f32(optimizer.state(param));
          return {
            data: bits(param.data),
            step: state.step,
            expAvg: bits(state.expAvg),
            expAvgSq: bits(state.expAvgSq),
            maxExpAvgSq: state.maxExpAvgSq === undefined ? null : bits(state.maxExpAvgSq),
          };
        }),
      ),
    },
    (_, value: unknown) => (Object.is(value, -0) ? '-0' : value),
  );
}

function expectSameStateDict(actual: OptimizerStateDict, expected: OptimizerStateDict): void {
  const plain = (sd: OptimizerStateDict) =>
    JSON.stringify(sd, (_, value: unknown) =>
      value instanceof Float32Array ? bits(value) : Object.is(value, -0) ? '-0' : value,
    );
  expect(plain(actual)).toBe(plain(expected));
}

// ---------------------------------------------------------------------------------------------

describe('stateDict', () => {
  it('holds steps, moments, names, groups, hyperparameters and the optimizer kind', () => {
    const optimizer = trained(3);
    optimizer.paramGroups[1]!.lr = 0.5;
    const sd = optimizer.stateDict();
    const params = optimizer.paramGroups.flatMap((group) => group.params);
    expect(sd.optimizer).toBe('adamw');
    expect(sd.paramGroups).toEqual([
      {
        params: [0, 1],
        lr: 0.01,
        betas: [0.8, 0.99],
        eps: 1e-8,
        weightDecay: 0.1,
        amsgrad: false,
        maximize: false,
        stateDtype: 'float32',
      },
      {
        params: [2, 3],
        lr: 0.5,
        betas: [0.9, 0.999],
        eps: 1e-6,
        weightDecay: 0.01,
        amsgrad: true,
        maximize: true,
        stateDtype: 'float32',
      },
    ]);
    expect([sd.stochasticRounding, sd.seed]).toEqual([false, 0]);
    expect(sd.state.map((entry) => entry.name)).toEqual(NAMES);
    expect(sd.state.map((entry) => 'name' in entry)).toEqual([true, false, true, true]);
    sd.state.map(f32).forEach((entry, k) => {
      const state = f32(optimizer.state(params[k]!));
      expect(entry.step).toBe(3);
      expect(bits(entry.expAvg)).toEqual(bits(state.expAvg));
      expect(bits(entry.expAvgSq)).toEqual(bits(state.expAvgSq));
      expect(entry.maxExpAvgSq === undefined).toBe(k < 2);
      if (entry.maxExpAvgSq !== undefined) {
        expect(bits(entry.maxExpAvgSq)).toEqual(bits(state.maxExpAvgSq!));
      }
    });
    expect(trained(1, 'adam').stateDict().optimizer).toBe('adam');
  });

  it('is a copy: later steps do not change it, and changing it does not change the optimizer', () => {
    const optimizer = trained(2);
    const sd = optimizer.stateDict();
    const before = JSON.stringify(sd, (_, v: unknown) => (v instanceof Float32Array ? bits(v) : v));
    const params = optimizer.paramGroups.flatMap((group) => group.params);
    expect(f32(sd.state[0]!).expAvg).not.toBe(f32(optimizer.state(params[0]!)).expAvg);
    train(optimizer, 2, 1);
    sd.paramGroups[0]!.betas[0] = 0.1;
    expect(optimizer.paramGroups[0]!.betas[0]).toBe(0.8);
    const fingerprintBefore = fingerprint(optimizer);
    f32(sd.state[0]!).expAvg.fill(9);
    expect(fingerprint(optimizer)).toBe(fingerprintBefore);
    sd.paramGroups[0]!.betas[0] = 0.8;
    f32(sd.state[0]!).expAvg.set(f32(optimizer.state(params[0]!)).expAvg);
    expect(
      JSON.stringify(sd, (_, v: unknown) => (v instanceof Float32Array ? bits(v) : v)),
    ).not.toBe(before);
  });
});

describe('loadStateDict', () => {
  it('resumes exactly: N steps, load into a fresh optimizer, M steps == N + M steps', () => {
    for (const kind of ['adamw', 'adam'] as const) {
      const straight = trained(9, kind);
      const first = trained(5, kind);
      const resumed = makeOptimizer(kind);
      // The weights are the model's, not the optimizer's: copy them as a training script would.
      const firstParams = first.paramGroups.flatMap((group) => group.params);
      resumed.paramGroups
        .flatMap((group) => group.params)
        .forEach((param, k) => {
          param.data.set(firstParams[k]!.data);
        });
      resumed.loadStateDict(first.stateDict());
      train(resumed, 5, 4);
      expect(fingerprint(resumed)).toBe(fingerprint(straight));
      // Without the state the same weights continue differently: the comparison can fail.
      const stateless = makeOptimizer(kind);
      stateless.paramGroups
        .flatMap((group) => group.params)
        .forEach((param, k) => {
          param.data.set(firstParams[k]!.data);
        });
      train(stateless, 5, 4);
      expect(fingerprint(stateless)).not.toBe(fingerprint(straight));
    }
  });

  it('restores hyperparameters and copies into the arrays state() returned', () => {
    const source = trained(4);
    source.paramGroups[0]!.lr = 0.25;
    source.paramGroups[0]!.betas = [0.5, 0.75];
    source.paramGroups[1]!.eps = 0;
    source.paramGroups[1]!.weightDecay = 0;
    source.paramGroups[1]!.maximize = false;
    const target = makeOptimizer();
    const params = target.paramGroups.flatMap((group) => group.params);
    const view = f32(target.state(params[1]!)).expAvg;
    const sd = source.stateDict();
    target.loadStateDict(sd);
    expectSameStateDict(target.stateDict(), sd);
    expect(view).toBe(f32(target.state(params[1]!)).expAvg);
    expect(bits(view)).toEqual(bits(f32(sd.state[1]!).expAvg));
    f32(sd.state[1]!).expAvg.fill(1);
    expect(bits(view)).not.toEqual(bits(f32(sd.state[1]!).expAvg));
  });

  it('keeps NaN payloads, infinities, subnormals and signed zeros', () => {
    const source = trained(1);
    const params = source.paramGroups.flatMap((group) => group.params);
    const special = new Uint32Array([0x7fc00001, 0xff800000, 0x00000001, 0x80000000, 0x7f7fffff]);
    f32(source.state(params[0]!)).expAvg.set(new Float32Array(special.buffer));
    const target = makeOptimizer();
    target.loadStateDict(source.stateDict());
    expect(bits(f32(target.state(target.paramGroups[0]!.params[0]!)).expAvg)).toEqual(
      Array.from(special),
    );
  });

  const mismatches: [string, (sd: OptimizerStateDict) => unknown, ErrorConstructor, RegExp][] = [
    ['not an object', () => 7, TypeError, /Expected an object for stateDict but received 7/],
    [
      'an unknown key',
      (sd) => ({ ...sd, param_groups: [] }),
      TypeError,
      /for the key stateDict.param_groups but received an unknown key/,
    ],
    [
      'the other optimizer kind',
      (sd) => ({ ...sd, optimizer: 'adam' }),
      RangeError,
      /Expected 'adamw' \(this optimizer is AdamW\) for stateDict.optimizer but received 'adam'/,
    ],
    [
      'an unknown optimizer kind',
      (sd) => ({ ...sd, optimizer: 'sgd' }),
      RangeError,
      /Expected 'adamw' \(this optimizer is AdamW\) for stateDict.optimizer but received 'sgd'/,
    ],
    [
      'paramGroups not an array',
      (sd) => ({ ...sd, paramGroups: {} }),
      TypeError,
      /stateDict.paramGroups/,
    ],
    [
      'one group too few',
      (sd) => ({ ...sd, paramGroups: sd.paramGroups.slice(1) }),
      RangeError,
      /Expected 2 param groups .* received 1/,
    ],
    [
      'a group with a param too many',
      (sd) => {
        sd.paramGroups[0]!.params.push(2);
      },
      RangeError,
      /Expected 2 params .* for stateDict.paramGroups\[0\].params but received 3/,
    ],
    [
      'groups listing params out of order',
      (sd) => {
        sd.paramGroups[1]!.params.reverse();
      },
      RangeError,
      /param index 2 .* for stateDict.paramGroups\[1\].params\[0\] but received 3/,
    ],
    [
      'amsgrad switched off',
      (sd) => {
        sd.paramGroups[1]!.amsgrad = false;
      },
      RangeError,
      /Expected true .*amsgrad decides.* for stateDict.paramGroups\[1\].amsgrad/,
    ],
    [
      'a negative lr',
      (sd) => {
        sd.paramGroups[1]!.lr = -1;
      },
      RangeError,
      /finite number >= 0 for stateDict.paramGroups\[1\].lr/,
    ],
    [
      'a missing lr',
      (sd) => {
        delete (sd.paramGroups[1] as { lr?: number }).lr;
      },
      TypeError,
      /a number for stateDict.paramGroups\[1\].lr but received undefined/,
    ],
    [
      'a beta of 1',
      (sd) => {
        sd.paramGroups[1]!.betas[1] = 1;
      },
      RangeError,
      /\[0, 1\) for stateDict.paramGroups\[1\].betas\[1\]/,
    ],
    [
      'a NaN eps',
      (sd) => {
        sd.paramGroups[1]!.eps = NaN;
      },
      RangeError,
      /stateDict.paramGroups\[1\].eps/,
    ],
    [
      'an infinite weightDecay',
      (sd) => {
        sd.paramGroups[1]!.weightDecay = Infinity;
      },
      RangeError,
      /stateDict.paramGroups\[1\].weightDecay/,
    ],
    [
      'maximize not a boolean',
      (sd) => {
        (sd.paramGroups[1] as { maximize: unknown }).maximize = 1;
      },
      TypeError,
      /a boolean for stateDict.paramGroups\[1\].maximize/,
    ],
    ['state not an array', (sd) => ({ ...sd, state: null }), TypeError, /stateDict.state/],
    [
      'one param too few',
      (sd) => {
        sd.state.pop();
      },
      RangeError,
      /Expected 4 param states \(as this optimizer\) for stateDict.state but received 3/,
    ],
    [
      'a fractional step',
      (sd) => {
        sd.state[3]!.step = 1.5;
      },
      RangeError,
      /integer >= 0 for stateDict.state\[3\].step but received 1.5/,
    ],
    [
      'a negative step',
      (sd) => {
        sd.state[3]!.step = -1;
      },
      RangeError,
      /stateDict.state\[3\].step/,
    ],
    [
      'a step of 2^53',
      (sd) => {
        sd.state[3]!.step = 2 ** 53;
      },
      RangeError,
      /stateDict.state\[3\].step/,
    ],
    [
      'a step that is a string',
      (sd) => {
        (sd.state[3] as { step: unknown }).step = '3';
      },
      TypeError,
      /a number for stateDict.state\[3\].step/,
    ],
    [
      'expAvg one element short',
      (sd) => {
        f32(sd.state[3]!).expAvg = f32(sd.state[3]!).expAvg.subarray(1);
      },
      RangeError,
      /Float32Array of 3 elements for stateDict.state\[3\].expAvg but received a Float32Array of 2/,
    ],
    [
      'expAvgSq a Float64Array',
      (sd) => {
        (sd.state[3] as { expAvgSq: unknown }).expAvgSq = new Float64Array(3);
      },
      TypeError,
      /a Float32Array for stateDict.state\[3\].expAvgSq but received a Float64Array/,
    ],
    [
      'maxExpAvgSq missing with amsgrad',
      (sd) => {
        delete f32(sd.state[3]!).maxExpAvgSq;
      },
      TypeError,
      /Float32Array for stateDict.state\[3\].maxExpAvgSq but received undefined/,
    ],
    [
      'maxExpAvgSq without amsgrad',
      (sd) => {
        f32(sd.state[1]!).maxExpAvgSq = new Float32Array(17);
      },
      TypeError,
      /undefined \(this param's group keeps no maxExpAvgSq\) for stateDict.state\[1\].maxExpAvgSq/,
    ],
    [
      'another name',
      (sd) => {
        sd.state[3]!.name = 'ln.beta';
      },
      RangeError,
      /'ln.γ' \(the name of this optimizer's param 3\) for stateDict.state\[3\].name but received 'ln.beta'/,
    ],
    [
      'a name that is not a string',
      (sd) => {
        (sd.state[3] as { name: unknown }).name = 3;
      },
      TypeError,
      /stateDict.state\[3\].name/,
    ],
    [
      'an unknown key in a param state',
      (sd) => {
        (sd.state[3] as unknown as Record<string, unknown>).exp_avg = 1;
      },
      TypeError,
      /for the key stateDict.state\[3\].exp_avg but received an unknown key/,
    ],
  ];

  it.each(mismatches)('rejects %s and changes nothing', (_, mutate, ErrorType, message) => {
    // Hyperparameters and state that differ everywhere from the target's, so a partial load shows.
    const source = trained(6);
    source.paramGroups[0]!.lr = 0.125;
    const sd = source.stateDict();
    const replaced = mutate(sd);
    const target = trained(2);
    const before = fingerprint(target);
    let error: unknown;
    try {
      target.loadStateDict((replaced ?? sd) as OptimizerStateDict);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ErrorType);
    expect((error as Error).message).toMatch(message);
    expect(fingerprint(target)).toBe(before);
  });

  it('accepts a state dict without names, or an optimizer without names', () => {
    const sd = trained(2).stateDict();
    for (const entry of sd.state) delete entry.name;
    const target = makeOptimizer();
    target.loadStateDict(sd);
    const unnamed = makeOptimizer(
      'adamw',
      makeParams(LENGTHS, [undefined, undefined, undefined, undefined]),
    );
    unnamed.loadStateDict(trained(2).stateDict());
    expect(fingerprint(target).replace(/"data":\[[^\]]*\]/g, '')).toBe(
      fingerprint(unnamed).replace(/"data":\[[^\]]*\]/g, ''),
    );
  });
});

// ---------------------------------------------------------------------------------------------

/** The file, read the way a Python user would: json for the header, raw little-endian data. */
function readLikePython(file: string) {
  const bytes = fs.readFileSync(file);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  > & { __metadata__: Record<string, string> };
  const { __metadata__: metadata, ...tensors } = header;
  const start = 8 + headerLength;
  const data = (name: string): Buffer => {
    const info = tensors[name]!;
    return bytes.subarray(start + info.data_offsets[0], start + info.data_offsets[1]);
  };
  return { bytes, headerLength, metadata, tensors, data, start };
}

describe('save and load', () => {
  it('write the documented layout: state.<name or index>.<field>, metadata as JSON strings', () => {
    const optimizer = trained(3);
    const file = tempPath();
    optimizer.save(file);
    const { metadata, tensors, data, start } = readLikePython(file);
    expect(Object.keys(tensors)).toEqual([
      'state.w.0.step',
      'state.1.step',
      'state.b.0.step',
      'state.ln.γ.step',
      'state.w.0.exp_avg',
      'state.w.0.exp_avg_sq',
      'state.1.exp_avg',
      'state.1.exp_avg_sq',
      'state.b.0.exp_avg',
      'state.b.0.exp_avg_sq',
      'state.b.0.max_exp_avg_sq',
      'state.ln.γ.exp_avg',
      'state.ln.γ.exp_avg_sq',
      'state.ln.γ.max_exp_avg_sq',
    ]);
    expect(tensors['state.1.step']).toMatchObject({ dtype: 'I64', shape: [] });
    expect(data('state.1.step').readBigInt64LE(0)).toBe(3n);
    const params = optimizer.paramGroups.flatMap((group) => group.params);
    expect(tensors['state.1.exp_avg']).toMatchObject({ dtype: 'F32', shape: [17] });
    expect(data('state.1.exp_avg')).toEqual(viewBytes(f32(optimizer.state(params[1]!)).expAvg));
    expect(data('state.ln.γ.max_exp_avg_sq')).toEqual(
      viewBytes(f32(optimizer.state(params[3]!)).maxExpAvgSq!),
    );
    // Every tensor starts at a multiple of its element size in the file, for memory mapping.
    for (const info of Object.values(tensors)) {
      expect((start + info.data_offsets[0]) % (info.dtype === 'I64' ? 8 : 4)).toBe(0);
    }
    expect(metadata.format).toBe('simd-adamw.optimizer');
    expect(metadata.format_version).toBe('2');
    expect(JSON.parse(metadata.lean_state!)).toEqual({
      stochastic_rounding: false,
      seed: 0,
      min_8bit_size: 4096,
    });
    expect(metadata.optimizer).toBe('adamw');
    expect(JSON.parse(metadata.param_names!)).toEqual(['w.0', null, 'b.0', 'ln.γ']);
    expect(JSON.parse(metadata.param_groups!)).toEqual([
      {
        params: [0, 1],
        lr: 0.01,
        betas: [0.8, 0.99],
        eps: 1e-8,
        weight_decay: 0.1,
        amsgrad: false,
        maximize: false,
        state_dtype: 'float32',
      },
      {
        params: [2, 3],
        lr: 0.003,
        betas: [0.9, 0.999],
        eps: 1e-6,
        weight_decay: 0.01,
        amsgrad: true,
        maximize: true,
        state_dtype: 'float32',
      },
    ]);
  });

  it('round-trip bit for bit through AdamW.load, Adam.load and loadFrom', () => {
    for (const kind of ['adamw', 'adam'] as const) {
      const source = trained(4, kind);
      const params = source.paramGroups.flatMap((group) => group.params);
      f32(source.state(params[0]!)).expAvg.set(
        new Float32Array(
          new Uint32Array([0x7fc00001, 0x80000000, 1, 0xff800000, 0x7f800000]).buffer,
        ),
      );
      source.state(params[2]!).step = 0;
      source.paramGroups[0]!.lr = 0.1 + 0.2;
      source.paramGroups[1]!.weightDecay = -0;
      const file = tempPath();
      source.save(file);
      const expected = source.stateDict();

      const Optimizer = kind === 'adamw' ? AdamW : Adam;
      const loaded = Optimizer.load(file, makeParams());
      expect(loaded).toBeInstanceOf(Optimizer);
      expectSameStateDict(loaded.stateDict(), expected);
      expect(Object.is(loaded.paramGroups[1]!.weightDecay, -0)).toBe(true);

      const existing = makeOptimizer(kind);
      train(existing, 0, 2);
      existing.loadFrom(file);
      expectSameStateDict(existing.stateDict(), expected);
    }
  });

  it('round-trip a step count of 2^53 - 1, an empty param and a name with dots, quotes and emoji', () => {
    const names = ['a.b."c"\\😀', undefined];
    const params = makeParams([0, 2], names);
    const optimizer = new AdamW(params);
    train(optimizer, 0, 1);
    optimizer.state(params[1]!).step = Number.MAX_SAFE_INTEGER;
    const file = tempPath();
    optimizer.save(file);
    expect(Object.keys(readLikePython(file).tensors)).toContain('state.a.b."c"\\😀.exp_avg');
    expectSameStateDict(
      AdamW.load(file, makeParams([0, 2], names)).stateDict(),
      optimizer.stateDict(),
    );
  });

  it('overwrite the previous checkpoint atomically and leave no temporary file', () => {
    const file = path.join(folder, 'overwrite', 'state.safetensors');
    fs.mkdirSync(path.dirname(file));
    trained(1).save(file);
    const later = trained(3);
    later.save(file);
    expect(fs.readdirSync(path.dirname(file))).toEqual(['state.safetensors']);
    expectSameStateDict(AdamW.load(file, makeParams()).stateDict(), later.stateDict());
  });

  it('reject a name that collides with an unnamed param index, writing nothing', () => {
    const params = makeParams([2, 2], ['1', undefined]);
    const file = tempPath();
    expect(() => new AdamW(params).save(file)).toThrow(
      /^Expected distinct tensor keys for the params of this optimizer but received '1' for params 0 and 1 \(an unnamed param is keyed by its index/,
    );
    expect(fs.existsSync(file)).toBe(false);
  });

  it('reject a path that is not a non-empty string', () => {
    const optimizer = trained(1);
    expect(() => optimizer.save('')).toThrow(TypeError);
    expect(() => optimizer.loadFrom(7 as unknown as string)).toThrow(
      /Expected a non-empty string for path but received 7/,
    );
  });

  it('pass operating system errors through (a missing file)', () => {
    const optimizer = trained(1);
    const before = fingerprint(optimizer);
    expect(() => optimizer.loadFrom(path.join(folder, 'missing.safetensors'))).toThrow(/ENOENT/);
    expect(fingerprint(optimizer)).toBe(before);
  });
});

describe('loading a checkpoint that does not fit', () => {
  let file: string;
  beforeAll(() => {
    file = tempPath();
    trained(3).save(file);
  });

  function expectRejected(
    load: (target: AdamBase) => void,
    message: RegExp,
    target: AdamBase = trained(1),
  ): void {
    const before = fingerprint(target);
    expect(() => {
      load(target);
    }).toThrow(message);
    expect(fingerprint(target)).toBe(before);
  }

  it('into the other optimizer kind', () => {
    expectRejected(
      (target) => {
        target.loadFrom(file);
      },
      /Expected 'adam' \(this optimizer is Adam\) for __metadata__.optimizer of checkpoint .* but received 'adamw'/,
      trained(1, 'adam'),
    );
    expect(() => Adam.load(file, makeParams())).toThrow(/this optimizer is Adam/);
  });

  it('with params of other lengths', () => {
    const other = new AdamW(groupsOf(makeParams([5, 16, 1, 3])));
    expectRejected(
      (target) => {
        target.loadFrom(file);
      },
      /Expected 16 elements \(the length of paramGroups\[0\].params\[1\]\) for tensor 'state.1.exp_avg' of checkpoint .* but received 17/,
      other,
    );
    expect(() => AdamW.load(file, makeParams([5, 16, 1, 3]))).toThrow(/Expected 16 elements/);
  });

  it('with params of other names', () => {
    const renamed = new AdamW(groupsOf(makeParams(LENGTHS, ['w.0', undefined, 'b.1', 'ln.γ'])));
    expectRejected(
      (target) => {
        target.loadFrom(file);
      },
      /Expected 'b.1' .* for __metadata__.param_names\[2\] of checkpoint .* but received 'b.0'/,
      renamed,
    );
  });

  it('with other groups or amsgrad', () => {
    const params = makeParams();
    expectRejected(
      (target) => {
        target.loadFrom(file);
      },
      /Expected 1 param group \(as this optimizer\) for __metadata__.param_groups of checkpoint/,
      new AdamW(params),
    );
    const groups = groupsOf(makeParams());
    groups[1]!.amsgrad = false;
    expectRejected(
      (target) => {
        target.loadFrom(file);
      },
      /Expected false \(as this optimizer's paramGroups\[1\]; amsgrad decides which state exists\) for __metadata__.param_groups\[1\].amsgrad of checkpoint .* but received true/,
      new AdamW(groups),
    );
  });

  it('with a different number of params (static load)', () => {
    expect(() => AdamW.load(file, makeParams().slice(1))).toThrow(
      /Expected an array of 4 params \(as checkpoint .*, in its order\) for params but received an Array of 3 elements/,
    );
    expect(() => AdamW.load(file, 'params' as unknown as Param[])).toThrow(TypeError);
  });
});

// ---------------------------------------------------------------------------------------------
// Damaged files. A small model keeps the file (and so the number of damaged copies) small.

/** Rewrites a checkpoint's header (and data), then recomputes its CRC-32 (docs/file-format.md). */
function rewrite(
  file: string,
  edit: (header: Record<string, unknown>, metadata: Record<string, string>) => void,
  editData: (data: Buffer) => Buffer = (data) => data,
): string {
  const original = readLikePython(file);
  const header = JSON.parse(
    original.bytes.subarray(8, 8 + original.headerLength).toString('utf8'),
  ) as Record<string, unknown>;
  const metadata = header.__metadata__ as Record<string, string>;
  metadata.crc32 = '00000000';
  edit(header, metadata);
  const json = Buffer.from(JSON.stringify(header));
  const padded = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, ' ')]);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(padded.length));
  const bytes = Buffer.concat([length, padded, editData(original.bytes.subarray(original.start))]);
  const crc = zlib.crc32(bytes).toString(16).padStart(8, '0');
  const output = tempPath();
  fs.writeFileSync(
    output,
    Buffer.from(
      bytes.toString('latin1').replace('"crc32":"00000000"', `"crc32":"${crc}"`),
      'latin1',
    ),
  );
  return output;
}

describe('damaged checkpoint files are errors that change nothing', () => {
  const smallLengths = [3, 1];
  const smallNames = ['w', undefined];
  const smallOptimizer = () => {
    const params = makeParams(smallLengths, smallNames);
    return new AdamW([{ params: [params[0]!] }, { params: [params[1]!], amsgrad: true }]);
  };
  let good: Buffer;
  let goodFile: string;
  beforeAll(() => {
    const source = smallOptimizer();
    train(source, 0, 3);
    goodFile = tempPath();
    source.save(goodFile);
    good = fs.readFileSync(goodFile);
  });

  /**
   * loadFrom and the static load both fail; the target optimizer is unchanged. The error is the
   * first problem found: a RangeError (SafetensorsError for the format and checksum), or a
   * TypeError for metadata of the wrong type (a flipped byte can turn `"lr"` into `"mr"` before the
   * checksum, which covers the data read last, is reached).
   */
  function expectDamaged(file: string, message?: RegExp): void {
    const target = smallOptimizer();
    train(target, 0, 1);
    const before = fingerprint(target);
    let error: unknown;
    try {
      target.loadFrom(file);
    } catch (caught) {
      error = caught;
    }
    expect(error instanceof RangeError || error instanceof TypeError).toBe(true);
    if (message !== undefined) expect((error as Error).message).toMatch(message);
    expect(fingerprint(target)).toBe(before);
    expect(() => AdamW.load(file, makeParams(smallLengths, smallNames))).toThrow(
      (error as Error).message,
    );
  }

  it('the unmodified file loads (the rewrite helper keeps it valid too)', () => {
    const target = smallOptimizer();
    target.loadFrom(goodFile);
    target.loadFrom(rewrite(goodFile, () => undefined));
  });

  it('every truncation', () => {
    const file = tempPath();
    for (let length = 0; length < good.length; length++) {
      fs.writeFileSync(file, good.subarray(0, length));
      expectDamaged(file);
    }
  });

  it('every flipped byte, header or data', () => {
    const file = tempPath();
    for (let i = 0; i < good.length; i++) {
      for (const mask of [0x01, 0x80]) {
        const bytes = Buffer.from(good);
        bytes[i]! ^= mask;
        fs.writeFileSync(file, bytes);
        expectDamaged(file);
      }
    }
  });

  it.each<[string, (h: Record<string, unknown>, m: Record<string, string>) => void, RegExp]>([
    [
      'a tensor of the wrong dtype',
      (h) => {
        (h['state.w.exp_avg'] as { dtype: string }).dtype = 'I32';
      },
      /Expected a F32 vector .* for tensor 'state.w.exp_avg' .* received I32 \[3\]/,
    ],
    [
      'a tensor of the wrong shape',
      (h) => {
        (h['state.w.exp_avg'] as { shape: number[] }).shape = [1, 3];
      },
      /F32 vector \(shape \[n\]\) for tensor 'state.w.exp_avg' .* received F32 \[1, 3\]/,
    ],
    [
      'moments of different lengths',
      (h) => {
        const a = h['state.w.exp_avg'] as { shape: number[]; data_offsets: number[] };
        const b = h['state.w.exp_avg_sq'] as { shape: number[]; data_offsets: number[] };
        a.shape = [4];
        a.data_offsets[1]! += 4;
        b.shape = [2];
        b.data_offsets[0]! += 4;
      },
      /Expected shape \[3\] \(for a param of shape \[3\] in __metadata__.param_shapes\) for tensor 'state.w.exp_avg' .* received \[4\]/,
    ],
    [
      'a step stored as F64',
      (h) => {
        (h['state.w.step'] as { dtype: string }).dtype = 'F64';
      },
      /I64 scalar .* for tensor 'state.w.step'/,
    ],
    [
      'no format',
      (_, m) => {
        delete m.format;
      },
      /Expected 'simd-adamw.optimizer' \(a simd-adamw optimizer checkpoint\) for __metadata__.format .* received undefined/,
    ],
    [
      'no checksum',
      (_, m) => {
        delete m.crc32;
      },
      /Expected a string for __metadata__.crc32 of checkpoint '.*' but received nothing \(/,
    ],
    [
      'a future format version',
      (_, m) => {
        m.format_version = '3';
      },
      /'1' or '2' \(the versions this simd-adamw reads\)/,
    ],
    [
      'an unknown optimizer',
      (_, m) => {
        m.optimizer = 'sgd';
      },
      /Expected 'adamw' \(this optimizer is AdamW\) for __metadata__.optimizer of checkpoint .* but received 'sgd'/,
    ],
    [
      'param_groups that are not JSON',
      (_, m) => {
        m.param_groups = '[{';
      },
      /Expected JSON for __metadata__.param_groups/,
    ],
    [
      'a negative lr',
      (_, m) => {
        m.param_groups = m.param_groups!.replace('"lr":0.001', '"lr":-0.001');
      },
      /finite number >= 0 for __metadata__.param_groups\[0\].lr/,
    ],
    [
      'groups out of order',
      (_, m) => {
        m.param_groups = m
          .param_groups!.replace('"params":[0]', '"params":[1]')
          .replace(
            '"params":[1],"lr":0.001,"betas":[0.9,0.999],"eps":1e-8,"weight_decay":0.01,"amsgrad":true',
            '"params":[0],"lr":0.001,"betas":[0.9,0.999],"eps":1e-8,"weight_decay":0.01,"amsgrad":true',
          );
      },
      /param index 0/,
    ],
    [
      'an unknown group key',
      (_, m) => {
        m.param_groups = m.param_groups!.replace('"maximize"', '"foreach":false,"maximize"');
      },
      /^Expected one of params, lr, betas, eps, weight_decay, amsgrad, maximize, state_dtype for the key __metadata__.param_groups\[0\].foreach of checkpoint .* but received an unknown key$/,
    ],
    [
      'more names than params',
      (_, m) => {
        m.param_names = '["w",null,"x"]';
      },
      /^Expected param groups listing all 3 params of __metadata__\.param_names for __metadata__\.param_groups of checkpoint '.*' but received param groups listing 2 params$/,
    ],
    [
      'param_names that are not JSON',
      (_, m) => {
        m.param_names = '["w",';
      },
      /^Expected JSON for __metadata__\.param_names of checkpoint '.*' but received '\["w",' of type string \(Unexpected end of JSON at position 5\)$/,
    ],
  ])('%s', (_, edit, message) => {
    expectDamaged(rewrite(goodFile, edit), message);
  });

  it('a missing tensor', () => {
    const file = rewrite(
      goodFile,
      (header) => {
        delete header['state.1.max_exp_avg_sq'];
      },
      (data) => data.subarray(0, data.length - 4),
    );
    expectDamaged(
      file,
      /Expected a tensor 'state.1.max_exp_avg_sq' for checkpoint .* but received none/,
    );
  });

  it('an extra tensor', () => {
    const file = rewrite(
      goodFile,
      (header) => {
        const end = (header['state.1.max_exp_avg_sq'] as { data_offsets: number[] })
          .data_offsets[1]!;
        header.extra = { dtype: 'F32', shape: [1], data_offsets: [end, end + 4] };
      },
      (data) => Buffer.concat([data, Buffer.alloc(4)]),
    );
    expectDamaged(file, /Expected only the tensors of the 2 params .* unexpected tensor 'extra'/);
  });

  it.each<[string, bigint, RegExp]>([
    ['a negative step', -1n, /step count in \[0, 2\^53\) for tensor 'state.w.step' .* received -1/],
    ['a step of 2^53', 2n ** 53n, /received 9007199254740992/],
  ])('%s', (_, step, message) => {
    const file = rewrite(
      goodFile,
      () => undefined,
      (data) => {
        const copy = Buffer.from(data);
        copy.writeBigInt64LE(step, 0);
        return copy;
      },
    );
    expectDamaged(file, message);
  });

  it('a file that is not a safetensors file at all is a SafetensorsError', () => {
    const file = tempPath();
    fs.writeFileSync(file, 'PK\u0003\u0004 this is a zip, not a checkpoint');
    expect(() => smallOptimizer().loadFrom(file)).toThrow(SafetensorsError);
  });
});

describe('an interrupted save', () => {
  it('leaves the previous checkpoint loadable and no temporary file', () => {
    const file = path.join(folder, 'interrupted', 'state.safetensors');
    fs.mkdirSync(path.dirname(file));
    const first = trained(2);
    first.save(file);
    const later = trained(5);
    for (const failAfter of [0, 100, 1000, 1500]) {
      let written = 0;
      const ops: FileOps = {
        ...nodeFileOps,
        writeSync: (fd, buffer, offset, length, position) => {
          if (written + length > failAfter) throw new Error('injected: the process dies here');
          written += length;
          return nodeFileOps.writeSync(fd, buffer, offset, length, position);
        },
      };
      expect(() => {
        saveCheckpoint(optimizerInternals(later), file, ops);
      }).toThrow('injected');
      expect(fs.readdirSync(path.dirname(file))).toEqual(['state.safetensors']);
      expectSameStateDict(AdamW.load(file, makeParams()).stateDict(), first.stateDict());
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('resume in a fresh process', () => {
  const root = path.join(__dirname, '..');
  const child = path.join(__dirname, 'helpers', 'resume-child.js');

  // The child loads the built package; build it if it is missing or older than lib/.
  beforeAll(() => {
    const built = path.join(root, 'dist', 'lib', 'checkpoint.js');
    const sources = fs.readdirSync(path.join(root, 'lib')).map((f) => path.join(root, 'lib', f));
    const stale =
      !fs.existsSync(built) ||
      sources.some((source) => fs.statSync(source).mtimeMs > fs.statSync(built).mtimeMs);
    if (stale) {
      execFileSync(
        process.execPath,
        [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
        {
          cwd: root,
        },
      );
    }
  }, 120_000);

  function run(config: Record<string, unknown>): string {
    return execFileSync(process.execPath, [child, JSON.stringify(config)], { encoding: 'utf8' });
  }

  it.each(['adamw', 'adam'])(
    '%s: N steps, save, load in a new process, M steps == N + M steps, bit for bit',
    (optimizer) => {
      const checkpoint = tempPath();
      const weights = path.join(folder, `weights-${optimizer}.bin`);
      const straight = run({ optimizer, from: 0, steps: 12 });
      run({ optimizer, from: 0, steps: 7, save: checkpoint, weightsOut: weights });
      const resumed = run({ optimizer, from: 7, steps: 5, load: checkpoint, weightsIn: weights });
      expect(resumed).toBe(straight);
      // Resuming the weights without the optimizer state diverges: the comparison can fail.
      const stateless = run({
        optimizer,
        from: 7,
        steps: 5,
        load: checkpoint,
        weightsIn: weights,
        freshState: true,
      });
      expect(stateless).not.toBe(straight);
    },
  );
});
