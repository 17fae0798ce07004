// Iterables of params and of groups (issue 15): the constructors, addParamGroup and the static load
// take any iterable (an Array, a Set, a generator, map.values()), read once, and step exactly as
// with an Array; strings and typed arrays, iterable of characters and numbers, are refused.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Adafactor, AdamW, type AnyParam, Lion, type Param } from '../lib';
import {
  cloneModel,
  type GroupInput,
  KINDS,
  makeModel,
  snapshot,
  train,
} from './helpers/named-model';

function* generate<T>(items: readonly T[]): Generator<T> {
  yield* items;
}

// An iterable that counts how often it is asked for an iterator.
function counted<T>(items: readonly T[]): { iterable: Iterable<T>; reads: () => number } {
  let reads = 0;
  return {
    iterable: {
      [Symbol.iterator]() {
        reads++;
        return items[Symbol.iterator]();
      },
    },
    reads: () => reads,
  };
}

describe.each(KINDS)('$name takes any iterable of params or groups', (kind) => {
  // The same model through each kind of iterable, stepped three times: bit for bit the Array's.
  const forms: [string, (params: Param[]) => Iterable<AnyParam> | Iterable<GroupInput>][] = [
    ['a Set', (params) => new Set(params)],
    ['a generator', (params) => generate(params)],
    ['map.values()', (params) => new Map(params.map((p) => [p.name, p])).values()],
    [
      'groups in a generator',
      (params) => generate([{ params: params.slice(0, 2) }, { params: params.slice(2), lr: 1e-3 }]),
    ],
    [
      'groups with Sets of params',
      (params) => [
        { params: new Set(params.slice(0, 2)) },
        { params: generate(params.slice(2)), lr: 1e-3 },
      ],
    ],
  ];
  it.each(forms)('%s', (form, make) => {
    const params = makeModel();
    const copy = cloneModel(params);
    const grouped = form.startsWith('groups');
    const optimizer = kind.create(make(params));
    const reference = kind.create(
      grouped ? [{ params: copy.slice(0, 2) }, { params: copy.slice(2), lr: 1e-3 }] : copy,
    );
    expect(optimizer.paramGroups.map((g) => g.params.length)).toEqual(grouped ? [2, 4] : [6]);
    train(optimizer, params, 0, 3);
    train(reference, copy, 0, 3);
    expect(snapshot(optimizer, params)).toEqual(snapshot(reference, copy));
  });

  it('reads the iterable once', () => {
    const params = makeModel();
    const outer = counted(params);
    kind.create(outer.iterable);
    expect(outer.reads()).toBe(1);
    const inner = counted(params);
    const groups = counted([{ params: inner.iterable }]);
    kind.create(groups.iterable);
    expect([groups.reads(), inner.reads()]).toEqual([1, 1]);
  });
});

describe('iterables that are not lists of params', () => {
  const param = makeModel()[0];
  const cases: [string, unknown, string][] = [
    [
      'a string',
      'fc1.weight',
      "Expected an iterable of params or of param groups for params but received 'fc1.weight' of type string",
    ],
    [
      'a Float32Array',
      new Float32Array(3),
      'Expected an iterable of params or of param groups for params but received a Float32Array of 3 elements',
    ],
    [
      'a number',
      3,
      'Expected an iterable of params or of param groups for params but received 3 of type number',
    ],
    [
      'a plain object',
      { data: param.data },
      'Expected an iterable of params or of param groups for params but received an object',
    ],
    [
      'an empty Set',
      new Set(),
      'Expected at least one param for params but received an empty iterable',
    ],
    [
      "a group's params as a string",
      [{ params: 'ab' }],
      "Expected an iterable of params for paramGroups[0].params but received 'ab' of type string",
    ],
    [
      "a group's params as a Uint16Array",
      [{ params: new Uint16Array(2) }],
      'Expected an iterable of params for paramGroups[0].params but received a Uint16Array of 2 elements',
    ],
  ];
  it.each(cases)('%s is refused', (_, value, message) => {
    for (const create of [
      () => new AdamW(value as never),
      () => new Lion(value as never),
      () => new Adafactor(value as never),
    ]) {
      expect(create).toThrow(message);
    }
    const isEmpty = value instanceof Set;
    expect(create(value)).toBeInstanceOf(isEmpty ? RangeError : TypeError);
  });

  function create(value: unknown): unknown {
    try {
      new AdamW(value as never);
    } catch (error) {
      return error;
    }
    return undefined;
  }

  it('addParamGroup and the static load take iterables too', () => {
    const params = makeModel();
    const optimizer = new AdamW(generate(params.slice(0, 3)));
    optimizer.addParamGroup({ params: new Set(params.slice(3)).values() });
    expect(optimizer.paramGroups.map((g) => g.params.length)).toEqual([3, 3]);
    train(optimizer, params, 0, 1);
    const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'simd-adamw-iterables-'));
    try {
      const file = path.join(folder, 'a.safetensors');
      optimizer.save(file);
      const loaded = AdamW.load(file, generate(cloneModel(params)));
      expect(loaded.paramGroups.map((g) => g.params.length)).toEqual([3, 3]);
      expect(() => AdamW.load(file, 'abc' as never)).toThrow(
        "Expected an iterable of the checkpoint's params for params but received 'abc' of type string",
      );
    } finally {
      fs.rmSync(folder, { recursive: true, force: true });
    }
  });
});
