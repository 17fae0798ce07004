// Name-matched checkpoints (issue 15): when every param has a name, on both sides, the static load,
// loadFrom and loadStateDict match saved params to the optimizer's by name, in any order, and
// groups by the names of their params; the resumed run continues bit for bit. A missing or extra
// name is a RangeError listing them (sorted, capped), changing nothing. Unnamed params keep the
// rule of position.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import {
  AdamW,
  type AnyParam,
  type GenericStateDict,
  linearWarmup,
  noDecay,
  type Optimizer,
  type Param,
} from '../lib';
import {
  cloneModel,
  KINDS,
  LAYERS,
  makeModel,
  setGrads,
  snapshot,
  train,
} from './helpers/named-model';

let folder: string;
beforeAll(() => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'simd-adamw-names-'));
});
afterAll(() => {
  fs.rmSync(folder, { recursive: true, force: true });
});
let fileCount = 0;
const tempPath = (): string => path.join(folder, `names-${fileCount++}.safetensors`);

// A permutation that moves every param: reversed.
const shuffled = <T>(items: readonly T[]): T[] => [...items].reverse();

// noDecay's groups, given distinct lrs (so that a group matched to the wrong one shows), exempt
// first or second.
function groupsOf(params: readonly Param[], exemptFirst = false) {
  const [decayed, exempt] = noDecay(params);
  const groups = [
    { ...decayed, lr: 3e-3 },
    { ...exempt, lr: 7e-3 },
  ];
  return exemptFirst ? [groups[1], groups[0]] : groups;
}

describe.each(KINDS)('$name: saved params are matched by name', (kind) => {
  // The run that is saved after 3 steps, and its continuation for 3 more, as the reference.
  function reference() {
    const params = makeModel();
    const optimizer = kind.create(groupsOf(params));
    optimizer.schedule = linearWarmup({ warmupSteps: 10 });
    train(optimizer, params, 0, 3);
    const file = tempPath();
    optimizer.save(file);
    const stateDict = optimizer.stateDict() as GenericStateDict;
    const atSave = cloneModel(params);
    train(optimizer, params, 3, 3);
    return { file, stateDict, atSave, expected: snapshot(optimizer, params), optimizer };
  }

  function expectResumed(optimizer: Optimizer, params: Param[], expected: object): void {
    train(optimizer, params, 3, 3);
    expect(snapshot(optimizer, params)).toEqual(expected);
  }

  it('static load: the params in the model order (not the groups order), or any order', () => {
    const { file, atSave, expected, optimizer: saved } = reference();
    // The model's order, as a user has it; the file's groups came from noDecay().
    const model = cloneModel(atSave);
    const loaded = kind.load(file, model);
    expect(loaded.paramGroups.map((g) => g.params.map((p) => p.name))).toEqual(
      saved.paramGroups.map((g) => g.params.map((p) => p.name)),
    );
    expectResumed(loaded, model, expected);
    // Reversed, and as a Set.
    const reversed = cloneModel(atSave);
    expectResumed(kind.load(file, new Set(shuffled(reversed))), reversed, expected);
  });

  it('loadFrom and loadStateDict: the groups in another order, params reordered within', () => {
    const { file, stateDict, atSave, expected, optimizer: saved } = reference();
    for (const load of ['loadFrom', 'loadStateDict'] as const) {
      const params = cloneModel(atSave);
      // Exempt group first, each group's params reversed, other lrs than the saved ones.
      const groups = groupsOf(params, true).map((group) => ({
        ...group,
        params: shuffled(group.params),
        lr: 0.5,
      }));
      const target = kind.create(groups);
      if (load === 'loadFrom') target.loadFrom(file);
      else target.loadStateDict(stateDict);
      // Each group has the saved hyperparameters of the group with its params, and the schedule
      // the saved base lr of that group.
      const lrOf = (optimizer: Optimizer, name: string) =>
        optimizer.paramGroups.find((g) => g.params.some((p) => p.name === name))?.lr;
      // (`saved` has taken 3 more steps: compare with the state dict's lrs.)
      const savedLr = (name: string) =>
        stateDict.paramGroups[
          stateDict.paramGroups.findIndex((g) =>
            g.params.some((k) => stateDict.state[k].name === name),
          )
        ].lr;
      for (const name of ['fc1.weight', 'fc1.bias']) expect(lrOf(target, name)).toBe(savedLr(name));
      const wd = (optimizer: Optimizer, name: string) =>
        (
          optimizer.paramGroups.find((g) => g.params.some((p) => p.name === name)) as unknown as {
            weightDecay: number;
          }
        ).weightDecay;
      expect(wd(target, 'fc1.bias')).toBe(0);
      expect(wd(target, 'fc1.weight')).toBe(0.1);
      expect(target.schedule).toEqual(saved.schedule);
      expectResumed(target, params, expected);
    }
  });

  it('a missing or extra name is a RangeError listing them, and changes nothing', () => {
    const { file, stateDict, atSave } = reference();
    const renamed = cloneModel(atSave);
    renamed[1].name = 'fc0.weight';
    renamed[5].name = 'head.bias';
    const message =
      /Expected the param names of checkpoint .* \(params are matched by name when every param has one\) for params but received 2 names not among them \('fc0.weight', 'head.bias'\), and none of 'fc1.weight', 'fc2.bias'$/;
    expect(() => kind.load(file, renamed)).toThrow(message);
    expect(() => kind.load(file, renamed.slice(0, 5))).toThrow(
      /for params but received 1 name not among them \('fc0.weight'\), and none of 'fc1.weight', 'fc2.bias'$/,
    );
    expect(() => kind.load(file, [...cloneModel(atSave), ...makeModel([['extra', [2]]])])).toThrow(
      /for params but received 1 name not among them \('extra'\)$/,
    );
    const target = kind.create(groupsOf(renamed));
    const before = snapshot(target, renamed);
    const beforeLrs = target.paramGroups.map((g) => g.lr);
    expect(() => {
      target.loadFrom(file);
    }).toThrow(
      /Expected the param names of this optimizer \(params are matched by name when every param has one\) for __metadata__.param_names of checkpoint .* but received 2 names not among them \('fc1.weight', 'fc2.bias'\), and none of 'fc0.weight', 'head.bias'$/,
    );
    expect(() => {
      target.loadStateDict(stateDict as never);
    }).toThrow(
      /Expected the param names of this optimizer .* for stateDict.state but received 2 names not among them \('fc1.weight', 'fc2.bias'\), and none of 'fc0.weight', 'head.bias'$/,
    );
    expect(snapshot(target, renamed)).toEqual(before);
    expect(target.paramGroups.map((g) => g.lr)).toEqual(beforeLrs);
    expect(target.schedule).toBeNull();
  });

  it('groups are matched by their params: a saved group split over two groups is an error', () => {
    const { file, stateDict, atSave } = reference();
    const params = cloneModel(atSave);
    const named = (...names: string[]) => params.filter((p) => names.includes(p.name ?? ''));
    // The file's first group (embed.weight, fc1.weight, fc2.weight) split over two groups.
    const split = kind.create([
      { params: named('embed.weight', 'fc1.weight') },
      { params: named('fc2.weight', 'fc1.bias', 'ln.weight', 'fc2.bias') },
    ]);
    const before = snapshot(split, params);
    expect(() => {
      split.loadFrom(file);
    }).toThrow(
      /Expected the params of one param group of this optimizer \(groups are matched by their params' names\) for __metadata__.param_groups\[0\].params of checkpoint .* but received 'embed.weight' \(in its paramGroups\[0\]\) and 'fc2.weight' \(in its paramGroups\[1\]\)$/,
    );
    expect(() => {
      split.loadStateDict(stateDict as never);
    }).toThrow(/for stateDict.paramGroups\[0\].params but received 'embed.weight'/);
    expect(snapshot(split, params)).toEqual(before);
    // A group holding the saved group's params and one more.
    const merged = kind.create([
      { params: named('embed.weight', 'fc1.weight', 'fc2.weight', 'fc1.bias') },
      { params: named('ln.weight', 'fc2.bias') },
    ]);
    expect(() => {
      merged.loadStateDict(stateDict as never);
    }).toThrow(
      "Expected all 4 params of this optimizer's paramGroups[0] (groups are matched by their params' names) for stateDict.paramGroups[0].params but received 3 of them (not 'fc1.bias')",
    );
  });
});

describe('name matching: the rules at the edges', () => {
  it('a state dict naming a param twice is refused by name', () => {
    const params = makeModel();
    const optimizer = new AdamW(params);
    const sd = optimizer.stateDict();
    sd.state[4].name = 'fc1.weight';
    expect(() => {
      optimizer.loadStateDict(sd);
    }).toThrow(
      "Expected unique param names for stateDict.state but received 'fc1.weight' twice (stateDict.state[1] and stateDict.state[4])",
    );
  });

  it('unnamed params (on either side) are matched by position, as before', () => {
    // The optimizer's params are unnamed: the file's order is the rule, names in the file ignored.
    const params = makeModel();
    const optimizer = new AdamW(groupsOf(params));
    train(optimizer, params, 0, 2);
    const file = tempPath();
    optimizer.save(file);
    const order = optimizer.paramGroups.flatMap((g) => g.params) as Param[];
    const names = order.map((p) => p.name ?? '');
    const unnamed = cloneModel(order).map((p) => {
      delete p.name;
      return p;
    });
    const loaded = AdamW.load(file, unnamed);
    train(loaded, unnamed, 2, 2, names);
    train(optimizer, params, 2, 2);
    expect(Object.values(snapshot(loaded, unnamed))).toEqual(
      order.map((p) => snapshot(optimizer, [p])[p.name ?? '']),
    );
    // One unnamed param in the file: position again, so reordered named params do not fit.
    const partly = makeModel();
    delete partly[0].name;
    const saved = new AdamW(partly);
    const sd = saved.stateDict();
    const reordered = shuffled(cloneModel(partly));
    expect(() => {
      new AdamW(reordered).loadStateDict(sd);
    }).toThrow(/the name of this optimizer's param 1\) for stateDict.state\[1\].name/);
  });

  it('long lists of names are cut after 10, sorted', () => {
    const many = (prefix: string) =>
      makeModel(
        Array.from(
          { length: 14 },
          (_, i) => [`${prefix}${String(i).padStart(2, '0')}`, [1]] as const,
        ),
      );
    const file = tempPath();
    new AdamW(many('a')).save(file);
    let message = '';
    try {
      AdamW.load(file, many('b'));
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain(
      "received 14 names not among them ('b00', 'b01', 'b02', 'b03', 'b04', 'b05', 'b06', 'b07', 'b08', 'b09', ... (4 more)), and none of 'a00', ",
    );
    expect(message).toMatch(/'a09', \.\.\. \(4 more\)$/);
  });

  it('Adafactor: each param is checked against the shape saved under its name', () => {
    const kind = KINDS.find((k) => k.name === 'Adafactor');
    if (kind === undefined) throw new Error('no Adafactor kind');
    const params = makeModel();
    const optimizer = kind.create(params);
    train(optimizer, params, 0, 1);
    const file = tempPath();
    optimizer.save(file);
    // embed.weight as [4, 6] instead of [6, 4]: same length, other factored state.
    const other = makeModel(
      LAYERS.map(([n, s]) => [n, n === 'embed.weight' ? [4, 6] : s] as const),
    );
    expect(() => {
      kind.create(shuffled(other)).loadFrom(file);
    }).toThrow(
      /Expected shape \[4, 6\] \(the shape of embed.weight in this optimizer\) for __metadata__.param_shapes\[0\] of checkpoint/,
    );
  });

  it('a param renamed after creation is matched by its current name', () => {
    const params = makeModel();
    const optimizer = new AdamW(params);
    setGrads(params, 0);
    optimizer.step();
    const sd = optimizer.stateDict();
    const target: AnyParam[] = shuffled(cloneModel(params));
    const loaded = new AdamW(target);
    target[0].name = 'renamed';
    expect(() => {
      loaded.loadStateDict(sd);
    }).toThrow(/received 1 name not among them \('fc2.bias'\), and not 'renamed'$/);
    target[0].name = 'fc2.bias';
    loaded.loadStateDict(sd);
    expect(loaded.state(target[0]).step).toBe(1);
  });
});
