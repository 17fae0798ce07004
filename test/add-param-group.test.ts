// addParamGroup (PyTorch's add_param_group, issue 15): a group added to a running optimizer is
// validated as a constructor's group is, gets zeroed state at once, steps as it would in an
// optimizer of its own (the other params as if nothing happened), joins an attached schedule, and
// is in every later checkpoint, which resumes bit for bit into an optimizer built with the same
// groups. Invalid groups, and a call while a stepAsync runs, change nothing.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import {
  Adafactor,
  AdamW,
  type AnyParam,
  cosineWithWarmup,
  lambdaSchedule,
  Lion,
  lrFactor,
  type Optimizer,
} from '../lib';
import { cloneModel, KINDS, LAYERS, makeModel, snapshot, train } from './helpers/named-model';

let folder: string;
beforeAll(() => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'simd-adamw-add-group-'));
});
afterAll(() => {
  fs.rmSync(folder, { recursive: true, force: true });
});
let fileCount = 0;
const tempPath = (): string => path.join(folder, `added-${fileCount++}.safetensors`);

// The model split in two: the first layers from the start, the last ones added later.
const FIRST = LAYERS.slice(0, 3);
const LATER = LAYERS.slice(3);

describe.each(KINDS)('$name.addParamGroup', (kind) => {
  it('steps the new group as an optimizer of its own would, and the others as before', () => {
    const first = makeModel(FIRST);
    const later = makeModel(LATER);
    // The references: the first params alone all along, the later ones alone from when they are
    // added.
    const firstAlone = cloneModel(first);
    const laterAlone = cloneModel(later);
    const optimizer = kind.create(first);
    const aloneFirst = kind.create(firstAlone);
    train(optimizer, first, 0, 2);
    train(aloneFirst, firstAlone, 0, 2);
    const aloneLater = kind.create([{ params: laterAlone, lr: 2e-3, weightDecay: 0 }]);

    optimizer.addParamGroup({ params: new Set(later), lr: 2e-3, weightDecay: 0 });
    expect(optimizer.paramGroups).toHaveLength(2);
    expect(optimizer.paramGroups[1].params).toEqual(later);
    expect(optimizer.paramGroups[1].lr).toBe(2e-3);
    // Its state exists at once, zeroed.
    for (const param of later) {
      const state = optimizer.state(param) as unknown as Record<string, unknown>;
      expect(state.step).toBe(0);
      for (const value of Object.values(state)) {
        if (value instanceof Float32Array) expect(value.every((x) => x === 0)).toBe(true);
      }
    }
    expect(optimizer.memory().groups).toHaveLength(2);
    expect(optimizer.memory().groups[1].state).toBeGreaterThan(0);

    const all = [...first, ...later];
    for (let t = 2; t < 5; t++) {
      train(optimizer, all, t, 1);
      train(aloneFirst, firstAlone, t, 1);
      train(aloneLater, laterAlone, t, 1);
    }
    expect(snapshot(optimizer, first)).toEqual(snapshot(aloneFirst, firstAlone));
    expect(snapshot(optimizer, later)).toEqual(snapshot(aloneLater, laterAlone));
  });

  it('is in later checkpoints, which resume bit for bit into an optimizer of the same groups', () => {
    const first = makeModel(FIRST);
    const later = makeModel(LATER);
    const optimizer = kind.create(first);
    train(optimizer, first, 0, 2);
    optimizer.addParamGroup({ params: later, lr: 2e-3 });
    const all = [...first, ...later];
    train(optimizer, all, 2, 2);
    const file = tempPath();
    optimizer.save(file);
    const stateDict = optimizer.stateDict();
    const atSave = cloneModel(all);
    train(optimizer, all, 4, 3);
    const expected = snapshot(optimizer, all);

    // The same groups from the constructor (loadFrom, loadStateDict), and the static load.
    for (const how of ['loadFrom', 'loadStateDict', 'load'] as const) {
      const params = cloneModel(atSave);
      let resumed: Optimizer;
      if (how === 'load') {
        resumed = kind.load(file, params);
      } else {
        resumed = kind.create([{ params: params.slice(0, 3) }, { params: params.slice(3) }]);
        if (how === 'loadFrom') resumed.loadFrom(file);
        else resumed.loadStateDict(stateDict as never);
      }
      expect(resumed.paramGroups.map((g) => g.lr)).toEqual([optimizer.paramGroups[0].lr, 2e-3]);
      train(resumed, params, 4, 3);
      expect(snapshot(resumed, params)).toEqual(expected);
    }
    // And into one built with the first group, then the same addParamGroup.
    const params = cloneModel(atSave);
    const rebuilt = kind.create(params.slice(0, 3));
    rebuilt.addParamGroup({ params: params.slice(3) });
    rebuilt.loadFrom(file);
    train(rebuilt, params, 4, 3);
    expect(snapshot(rebuilt, params)).toEqual(expected);
    // Not into the optimizer as it was before the group was added.
    expect(() => {
      kind.create(cloneModel(atSave).slice(0, 3)).loadFrom(file);
    }).toThrow(/Expected 1 param group \(as this optimizer\) for __metadata__.param_groups/);
  });

  it('refuses what a constructor refuses, with the same messages, and changes nothing', () => {
    const first = makeModel(FIRST);
    const optimizer = kind.create(first);
    train(optimizer, first, 0, 1);
    const before = snapshot(optimizer, first);
    const stateDict = JSON.stringify(optimizer.stateDict(), (_, v: unknown) =>
      ArrayBuffer.isView(v) ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex') : v,
    );
    const [other] = makeModel(LATER);
    const cases: [unknown, RegExp | string][] = [
      [
        undefined,
        'Expected a param group { params: Iterable<Param>, ...options } for paramGroups[1] but received undefined',
      ],
      [{ lr: 1 }, /for paramGroups\[1\] but received an object/],
      [
        { params: 'abc' },
        "Expected an iterable of params for paramGroups[1].params but received 'abc' of type string",
      ],
      [
        { params: new Float32Array(3) },
        'Expected an iterable of params for paramGroups[1].params but received a Float32Array of 3 elements',
      ],
      [{ params: [other], lr: -1 }, /for paramGroups\[1\].lr but received -1 of type number/],
      [
        { params: [other], momentum: 0.9 },
        /^Expected one of .* for the key paramGroups\[1\].momentum but received an unknown key$/,
      ],
      [
        { params: [first[0]] },
        'Expected a param not listed before (each param once, in one group) for paramGroups[1].params[0] but received one listed before',
      ],
      [
        { params: [other, other] },
        'Expected a param not listed before (each param once, in one group) for paramGroups[1].params[1] but received one listed before',
      ],
      [
        { params: [{ ...other, name: 'fc1.bias' }] },
        "Expected a name no other param has for paramGroups[1].params[0].name but received 'fc1.bias' of type string",
      ],
      [{ params: [{ data: new Float32Array(2) }] }, /paramGroups\[1\].params\[0\].grad/],
      // Memory shared with another param or with the optimizer's state.
      [
        { params: [{ data: new Float32Array(first[2].data.length), grad: first[2].data }] },
        'Expected fc1.bias.data and paramGroups[1].params[0].grad not to overlap in memory but they share bytes',
      ],
      [
        {
          params: [
            {
              data: new Float32Array(5),
              grad: Object.values(optimizer.state(first[2]) as object).find(
                (v): v is Float32Array => v instanceof Float32Array,
              ),
            },
          ],
        },
        /^Expected state of fc1.bias \(exp\w+\) and paramGroups\[1\].params\[0\].grad not to overlap in memory but they share bytes$/,
      ],
    ];
    for (const [group, message] of cases) {
      expect(() => {
        optimizer.addParamGroup(group as never);
      }).toThrow(message);
    }
    expect(optimizer.paramGroups).toHaveLength(1);
    expect(snapshot(optimizer, first)).toEqual(before);
    expect(
      JSON.stringify(optimizer.stateDict(), (_, v: unknown) =>
        ArrayBuffer.isView(v)
          ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')
          : v,
      ),
    ).toBe(stateDict);
    // A valid group is still accepted afterwards, and the optimizer steps.
    optimizer.addParamGroup({ params: [other] });
    train(optimizer, [...first, other], 1, 1);
    expect(optimizer.state(other).step).toBe(1);
  });
});

describe('addParamGroup with a schedule', () => {
  it("records the group's lr as its base lr and sets it for the schedule's position", () => {
    const schedule = cosineWithWarmup({ warmupSteps: 2, totalSteps: 10 });
    const first = makeModel(FIRST);
    const later = makeModel(LATER);
    const optimizer = new AdamW(first, { lr: 1e-2, schedule });
    train(optimizer, first, 0, 3);
    optimizer.addParamGroup({ params: later, lr: 0.5 });
    expect(optimizer.paramGroups[1].lr).toBe(0.5 * lrFactor(schedule, 3));
    expect(optimizer.paramGroups[0].lr).toBe(1e-2 * lrFactor(schedule, 3));
    train(optimizer, [...first, ...later], 3, 2);
    expect(optimizer.schedulePosition).toBe(5);
    expect(optimizer.paramGroups[1].lr).toBe(0.5 * lrFactor(schedule, 5));
    expect(optimizer.stateDict().lrSchedule?.baseLrs).toEqual([1e-2, 0.5]);
    // Resumed into the same groups, the schedule goes on for both.
    const file = tempPath();
    optimizer.save(file);
    const loaded = AdamW.load(file, cloneModel([...first, ...later]));
    expect(loaded.paramGroups.map((g) => g.lr)).toEqual(optimizer.paramGroups.map((g) => g.lr));
    expect(loaded.stateDict().lrSchedule?.baseLrs).toEqual([1e-2, 0.5]);
  });

  it('refuses a group whose lr is null (Adafactor relative step) while a schedule runs', () => {
    const first = makeModel(FIRST);
    const optimizer = new Adafactor(first, {
      lr: 1e-2,
      relativeStep: false,
      schedule: cosineWithWarmup({ warmupSteps: 2, totalSteps: 10 }),
    });
    expect(() => {
      optimizer.addParamGroup({ params: makeModel(LATER), relativeStep: true, lr: null });
    }).toThrow(
      "Expected a number (a schedule is attached, and it drives every group's lr; Adafactor computes its own step size where lr is null) for paramGroups[1].lr but received null",
    );
    expect(optimizer.paramGroups).toHaveLength(1);
    expect(optimizer.stateDict().lrSchedule?.baseLrs).toEqual([1e-2]);
    // Without a schedule such a group is fine.
    const plain = new Adafactor(makeModel(FIRST));
    plain.addParamGroup({ params: makeModel(LATER) });
    expect(plain.paramGroups[1].lr).toBeNull();
  });
});

describe('addParamGroup and the step machinery', () => {
  it('is refused while a stepAsync runs', async () => {
    const first = makeModel(FIRST);
    const optimizer = new Lion(first);
    const running = optimizer.stepAsync();
    expect(() => {
      optimizer.addParamGroup({ params: makeModel(LATER) });
    }).toThrow(
      expect.objectContaining({
        code: 'ERR_SIMD_ADAMW_STEP_IN_FLIGHT',
        message: expect.stringContaining('Cannot addParamGroup()') as string,
      }) as Error,
    );
    await running;
    expect(optimizer.paramGroups).toHaveLength(1);
  });

  it('works with skip, stepAsync, a blockwise8 group and stochastic rounding', async () => {
    const first = makeModel(FIRST);
    const later = makeModel(LATER);
    const optimizer = new AdamW<'float32' | 'bfloat16' | 'blockwise8'>(first, {
      stateDtype: 'bfloat16',
      stochasticRounding: true,
      seed: 7,
      min8bitSize: 4,
    });
    train(optimizer, first, 0, 1);
    optimizer.step({ skip: [first[0]] });
    optimizer.addParamGroup({ params: later, stateDtype: 'blockwise8' });
    expect(optimizer.state(later[0]).dtype).toBe('blockwise8');
    const all = [...first, ...later];
    optimizer.step({ skip: [first[0]] });
    await optimizer.stepAsync();
    expect(all.map((p) => optimizer.state(p).step)).toEqual([2, 4, 4, 2, 2, 2]);
    // A checkpoint of the mixed optimizer resumes bit for bit (each param's rounding key is its
    // place among all params, the added ones after the others).
    const file = tempPath();
    optimizer.save(file);
    const atSave = cloneModel(all);
    train(optimizer, all, 5, 2);
    const params: AnyParam[] = atSave;
    const resumed = AdamW.load(file, params);
    train(resumed, atSave, 5, 2);
    expect(snapshot(resumed, atSave)).toEqual(snapshot(optimizer, all));
  });
});

describe('addParamGroup with a lambda schedule that throws', () => {
  it('changes nothing: the factor is computed before the group is added', () => {
    let failing = false;
    const schedule = lambdaSchedule((step) => {
      if (failing) throw new Error('lambda failed');
      return 1 / (step + 1);
    });
    const first = makeModel(FIRST);
    const optimizer = new AdamW(first, { lr: 1e-3, schedule });
    const later = makeModel(LATER);
    failing = true;
    expect(() => {
      optimizer.addParamGroup({ params: later });
    }).toThrow('lambda failed');
    failing = false;
    expect(optimizer.paramGroups).toHaveLength(1);
    expect(optimizer.stateDict().lrSchedule?.baseLrs).toHaveLength(1);
    optimizer.addParamGroup({ params: later, lr: 2e-3 });
    expect(optimizer.paramGroups).toHaveLength(2);
    expect(optimizer.stateDict().lrSchedule?.baseLrs).toEqual([1e-3, 2e-3]);
  });
});
