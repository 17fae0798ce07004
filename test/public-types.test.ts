// The public API's types as a user's code meets them (issue 15), checked twice: by tsc over
// test/ (`npm run typecheck`), where a line that must not compile carries `// @ts-expect-error`
// (which is itself an error if the line compiles), and at run time, where each line runs and what
// it did is asserted. Also the messages of the errors a wrong use gets at run time.
import {
  Adafactor,
  Adam,
  AdamW,
  CAME,
  Lion,
  noDecay,
  type NoDecayGroup,
  type OptimizerOptions,
  type Param,
} from '../lib';
import type { SimdAdamOptions } from '../lib/tfjs';

function makeParams(): Param[] {
  return ['w', 'bias', 'ln.weight'].map((name, k) => {
    const length = 4 + 3 * k;
    const data = new Float32Array(length).map((_, i) => Math.sin(i + k));
    const grad = new Float32Array(length).map((_, i) => Math.cos(2 * i + k));
    return { name, data, grad };
  });
}

describe('betas are readonly tuples', () => {
  test('`as const` betas and configs compile for options, groups and live groups', () => {
    const params = makeParams();
    const config = { lr: 1e-3, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.1 } as const;
    const adamw = new AdamW(params, config);
    const adam = new Adam([{ params, betas: [0.8, 0.9] as const }]);
    const lion = new Lion(params, { betas: [0.95, 0.98] as const });
    const came = new CAME(params, { betas: [0.9, 0.99, 0.999] as const });
    // A typed config object, and the tfjs adapter's options (type only: tfjs is not loaded).
    const typed: OptimizerOptions = config;
    const tfOptions: SimdAdamOptions = { ...config, stateDtype: 'bfloat16' } as const;
    const bf16 = new AdamW(params, { ...config, stateDtype: 'bfloat16' } as const);
    adamw.paramGroups[0]!.betas = [0.5, 0.6] as const;
    lion.paramGroups[0]!.betas = [0.7, 0.8];
    for (const optimizer of [adamw, adam, lion, came, bf16]) optimizer.step();
    expect([
      adamw.paramGroups[0]!.betas,
      adam.paramGroups[0]!.betas,
      lion.paramGroups[0]!.betas,
      came.paramGroups[0]!.betas,
      bf16.paramGroups[0]!.stateDtype,
      typed.betas,
      tfOptions.betas,
    ]).toEqual([
      [0.5, 0.6],
      [0.8, 0.9],
      [0.7, 0.8],
      [0.9, 0.99, 0.999],
      'bfloat16',
      [0.9, 0.95],
      [0.9, 0.95],
    ]);
  });

  test('the wrong number of betas does not compile, and throws the TypeError at run time', () => {
    const params = makeParams();
    // @ts-expect-error AdamW has two betas
    expect(() => new AdamW(params, { betas: [0.9] })).toThrow(
      'Expected an array of two numbers for defaults.betas but received an Array of 1 element',
    );
    // @ts-expect-error Lion has two betas
    expect(() => new Lion(params, { betas: [0.9, 0.99, 0.999] })).toThrow(TypeError);
    // @ts-expect-error CAME has three
    expect(() => new CAME(params, { betas: [0.9, 0.99] })).toThrow(TypeError);
  });

  test("a live group's betas are replaced, not changed in place (frozen at run time)", () => {
    const optimizer = new AdamW(makeParams());
    const group = optimizer.paramGroups[0]!;
    expect(() => {
      // @ts-expect-error readonly tuple
      group.betas[0] = 0.5;
    }).toThrow(TypeError);
    expect(group.betas).toEqual([0.9, 0.999]);
  });
});

describe('noDecay() groups fit every optimizer', () => {
  test.each([
    ['AdamW', (groups: NoDecayGroup[]) => new AdamW(groups, { weightDecay: 0.1 })],
    ['Adam', (groups: NoDecayGroup[]) => new Adam(groups, { weightDecay: 0.1 })],
    ['Lion', (groups: NoDecayGroup[]) => new Lion(groups, { weightDecay: 0.1 })],
    ['Adafactor', (groups: NoDecayGroup[]) => new Adafactor(groups, { weightDecay: 0.1 })],
    ['CAME', (groups: NoDecayGroup[]) => new CAME(groups, { weightDecay: 0.1 })],
  ] as const)('%s: the exempt group has weightDecay 0, the other the default', (_, create) => {
    const params = makeParams();
    const optimizer = create(noDecay(params));
    optimizer.step();
    expect(
      optimizer.paramGroups.map((group) => [group.params.map((p) => p.name), group.weightDecay]),
    ).toEqual([
      [['w'], 0.1],
      [['bias', 'ln.weight'], 0],
    ]);
  });

  test('as written in a training script, without a cast; options added by spreading', () => {
    const params = makeParams();
    const adafactor = new Adafactor(noDecay(params));
    const came = new CAME(noDecay(params).map((group) => ({ ...group, lr: 1e-4 })));
    const lion = new Lion(noDecay(params, (p) => p.name === 'w'));
    // The groups keep the params' own type.
    const named: { name: string; data: Float32Array; grad: Float32Array }[] = params.map((p) => ({
      name: p.name ?? '',
      data: p.data,
      grad: p.grad,
    }));
    const names: string[] = noDecay(named).flatMap((group) => group.params.map((p) => p.name));
    expect([
      adafactor.paramGroups.length,
      came.paramGroups.map((group) => group.lr),
      lion.paramGroups.map((group) => group.weightDecay),
      names,
    ]).toEqual([2, [1e-4, 1e-4], [0, 0], ['w', 'bias', 'ln.weight']]);
  });
});

describe('messages for a wrong use', () => {
  test('zeroGrad() takes no argument: { setToNone: true } is a TypeError saying why, grads kept', () => {
    const params = makeParams();
    const optimizer = new AdamW(params);
    const before = params.map((p) => Array.from(p.grad));
    expect(() => {
      // @ts-expect-error zeroGrad takes no options
      optimizer.zeroGrad({ setToNone: true });
    }).toThrow(
      new TypeError(
        'Expected no argument for zeroGrad() but received an object (zeroGrad takes none: a grad ' +
          "is a typed array, which cannot be set to None as PyTorch's set_to_none does; " +
          'zeroGrad() fills it with zeros)',
      ),
    );
    expect(params.map((p) => Array.from(p.grad))).toEqual(before);
    // @ts-expect-error not even undefined
    expect(() => optimizer.zeroGrad(undefined)).toThrow(/received undefined/);
    optimizer.zeroGrad();
    expect(params.every((p) => p.grad.every((g) => g === 0))).toBe(true);
  });

  test('a Float32Array where a param belongs: says a param is { data, grad }', () => {
    const data = new Float32Array(4);
    // @ts-expect-error a Float32Array is not a Param
    expect(() => new AdamW([data])).toThrow(
      new TypeError(
        'Expected a param { data: Float32Array, grad: Float32Array | Uint16Array, name?: string, ' +
          '... } for params[0] but received a Float32Array of 4 elements (a param is ' +
          '{ data, grad }: its values and their gradient, not the values alone)',
      ),
    );
    const [p] = makeParams();
    expect(() => new Lion([{ params: [p!, new Float32Array(1) as unknown as Param] }])).toThrow(
      /for paramGroups\[0\]\.params\[1\] but received a Float32Array of 1 element \(a param is/,
    );
  });

  test('counts agree with their nouns: 1 element, 2 elements', () => {
    const [p] = makeParams();
    p!.grad = new Float32Array(1);
    expect(() => new AdamW([p!])).toThrow(
      'Expected a Float32Array of 4 elements for params[0].grad but received a Float32Array of 1 element',
    );
    const [q] = makeParams();
    q!.data = new Float32Array(1);
    q!.grad = new Float32Array(2);
    expect(() => new AdamW([q!])).toThrow(
      'Expected a Float32Array of 1 element for params[0].grad but received a Float32Array of 2 elements',
    );
  });

  test('a name used twice: in the one format, naming the param', () => {
    const [a, b] = makeParams();
    b!.name = a!.name!;
    expect(() => new AdamW([a!, b!])).toThrow(
      new RangeError(
        "Expected a name no other param has for params[1].name but received 'w' of type string",
      ),
    );
  });
});
