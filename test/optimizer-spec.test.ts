// The framework end to end with an optimizer this package does not ship: a spec written here,
// with its own hyperparameter names, over the 'adamw' native op. Everything generic (groups and
// setters, state(), memory(), state dicts, checkpoint files, the fused options) must follow the
// spec, and its steps must be Adam's bit for bit when the scalars are Adam's.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import {
  Adam,
  adamStepScalarsForTest,
  type BaseParamState,
  checkBetaForTest,
  checkNonNegativeForTest,
  Optimizer,
  type OptimizerSpec,
  type Param,
} from './helpers/framework';
import { f32 } from './helpers/float32-state';

interface LiteHyper {
  lr: number;
  momentum: number;
  smoothing: number;
  l2: number;
}

const LITE_SPEC: OptimizerSpec<LiteHyper> = {
  className: 'AdamLite',
  kind: 'adam-lite',
  ops: { float32: 'adamw' },
  hyperparameters: {
    lr: { default: 1e-3, check: checkNonNegativeForTest, fileKey: 'lr' },
    momentum: { default: 0.9, check: checkBetaForTest, fileKey: 'beta1' },
    smoothing: { default: 0.999, check: checkBetaForTest, fileKey: 'beta2' },
    l2: { default: 0, check: checkNonNegativeForTest, fileKey: 'l2_penalty' },
  },
  state: [
    { name: 'expAvg', fileName: 'm', shape: 'param' },
    { name: 'expAvgSq', fileName: 'v', shape: 'param' },
    // The op has a maxExpAvgSq; this optimizer never keeps one.
    {
      name: 'maxExpAvgSq',
      fileName: 'unused',

      shape: 'param',
      presentWhen: () => false,
    },
  ],
  decayKey: 'l2',
  // The op's scalars in another order than the package's own spec writes them, and its flags in
  // another bit order: the framework must reorder both.
  scalars: [
    'epsHat',
    'beta1',
    'oneMinusBeta1',
    'beta2',
    'oneMinusBeta2',
    'decay',
    'l2',
    'negStepSize',
  ],
  flags: ['coupled', 'maximize', 'amsgrad'],
  stepScalars: (h, step, out, offset) => {
    const scratch = new Float64Array(8);
    const adamFlags = adamStepScalarsForTest(
      {
        lr: h.lr,
        betas: [h.momentum, h.smoothing],
        eps: 1e-8,
        weightDecay: h.l2,
        amsgrad: false,
        maximize: false,
        stateDtype: 'float32',
      },
      step,
      false,
      scratch,
      0,
    );
    out[offset] = scratch[7]!;
    out.set(scratch.subarray(0, 7), offset + 1);
    // adam's bits: amsgrad 1, maximize 2, coupled 4; ours: coupled 1, maximize 2, amsgrad 4.
    return ((adamFlags & 4) >> 2) | (adamFlags & 2) | ((adamFlags & 1) << 2);
  },
};

interface LiteState extends BaseParamState {
  expAvg: Float32Array;
  expAvgSq: Float32Array;
}

interface LiteGroup {
  readonly params: readonly Param[];
  lr: number;
  momentum: number;
  smoothing: number;
  l2: number;
}

class AdamLite extends Optimizer<LiteGroup, LiteState> {
  static readonly spec = LITE_SPEC;
  constructor(
    params: Param[] | ({ params: Param[] } & Partial<LiteHyper>)[],
    options?: Partial<LiteHyper>,
  ) {
    super(LITE_SPEC, params, options);
  }
}

function params(seed: number, lengths = [33, 5]): Param[] {
  let x = seed;
  const next = () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x / 2 ** 31 - 0.5;
  };
  return lengths.map((n, i) => ({
    name: `p${i}`,
    data: Float32Array.from({ length: n }, next),
    grad: Float32Array.from({ length: n }, next),
  }));
}

const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

describe('an optimizer declared by a spec outside the package', () => {
  test('steps bit for bit as Adam with the same scalars', () => {
    const mine = params(1);
    const theirs = params(1);
    const lite = new AdamLite(mine, { lr: 0.01, momentum: 0.8, smoothing: 0.99, l2: 0.1 });
    const adam = new Adam(theirs, { lr: 0.01, betas: [0.8, 0.99], weightDecay: 0.1 });
    for (let s = 0; s < 3; s++) {
      lite.step({ clipGradNorm: 0.5 });
      adam.step({ clipGradNorm: 0.5 });
    }
    for (const [k, p] of mine.entries()) {
      expect(bits(p.data)).toEqual(bits(theirs[k]!.data));
      expect(bits(lite.state(p).expAvgSq)).toEqual(bits(f32(adam.state(theirs[k]!)).expAvgSq));
    }
    expect(Object.keys(lite.state(mine[0]!)).sort()).toEqual([
      'dtype',
      'expAvg',
      'expAvgSq',
      'step',
    ]);
  });

  test('groups have its hyperparameters, validated by its checks', () => {
    const lite = new AdamLite(params(2));
    const group = lite.paramGroups[0]!;
    expect({ ...group, params: undefined }).toEqual({
      params: undefined,
      lr: 1e-3,
      momentum: 0.9,
      smoothing: 0.999,
      l2: 0,
    });
    group.momentum = 0.5;
    expect(group.momentum).toBe(0.5);
    expect(() => {
      group.smoothing = 1;
    }).toThrow(
      new RangeError(
        'Expected a number in [0, 1) for paramGroups[0].smoothing but received 1 of type number',
      ),
    );
    expect(() => new AdamLite(params(2), { betas: [0.9, 0.99] } as Partial<LiteHyper>)).toThrow(
      new TypeError(
        'Expected one of lr, momentum, smoothing, l2, threads, schedule for the key defaults.betas but received an unknown key',
      ),
    );
  });

  test('memory() counts the state it keeps: two float32 tensors', () => {
    const lite = new AdamLite(params(3, [10, 6]));
    expect(lite.memory()).toMatchObject({ paramCount: 16, state: 16 * 8, total: 16 * 16 });
  });

  test('its state dict and checkpoint file use its names, and resume bit for bit', () => {
    const a = params(4);
    const lite = new AdamLite(a, { l2: 0.05 });
    lite.step();
    const sd = lite.stateDict() as {
      optimizer: string;
      state: Record<string, unknown>[];
      paramGroups: Record<string, unknown>[];
    };
    expect(sd.optimizer).toBe('adam-lite');
    expect(Object.keys(sd.state[0]!).sort()).toEqual([
      'dtype',
      'expAvg',
      'expAvgSq',
      'name',
      'step',
    ]);
    expect(sd.paramGroups[0]).toEqual({
      params: [0, 1],
      lr: 1e-3,
      momentum: 0.9,
      smoothing: 0.999,
      l2: 0.05,
    });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'simd-adamw-spec-'));
    const file = path.join(dir, 'lite.safetensors');
    try {
      lite.save(file);
      const header = fs.readFileSync(file).toString('latin1');
      expect(header).toContain('state.p0.m');
      expect(header).toContain('l2_penalty');
      expect(header).not.toContain('unused');
      const b = a.map((p) => ({ ...p, data: p.data.slice(), grad: p.grad.slice() }));
      const loaded = AdamLite.load(file, b);
      const fromDict = new AdamLite(
        a.map((p) => ({ ...p, data: p.data.slice(), grad: p.grad.slice() })),
      );
      fromDict.loadStateDict(sd);
      lite.step();
      loaded.step();
      fromDict.step();
      for (const [k, p] of a.entries()) {
        expect(bits(loaded.state(b[k]!).expAvg)).toEqual(bits(lite.state(p).expAvg));
        expect(bits(b[k]!.data)).toEqual(bits(p.data));
      }
      expect(() => Adam.load(file, b)).toThrow(/Expected 'adam' \(this optimizer is Adam\)/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a spec whose scalars do not match its native op is refused when it is first used', () => {
    class Broken extends Optimizer {
      constructor(p: Param[]) {
        super(
          {
            ...LITE_SPEC,
            className: 'Broken',
            scalars: [...LITE_SPEC.scalars.slice(1), 'extra'],
          } as OptimizerSpec<LiteHyper>,
          p,
          undefined,
        );
      }
    }
    expect(() => new Broken(params(5))).toThrow(
      /Broken's scalars .* do not match native op 'adamw'/,
    );
  });
});
