// Weight-decay masks (docs/training.md): `decay: false` on a param is exactly a
// group with weightDecay 0, for AdamW's decoupled decay and Adam's L2; noDecay splits params by
// name (biases and normalisation weights by default) into a decayed and an exempt group.
import { Adam, AdamW, type AdamBase, isBiasOrNorm, noDecay, type Param } from '../lib';
import { bitsOf, firstBitDifference } from './helpers/bits';
import { f32 } from './helpers/float32-state';

function makeParams(names: (string | undefined)[]): Param[] {
  return names.map((name, k) => {
    const length = 5 + 7 * k;
    const data = new Float32Array(length);
    const grad = new Float32Array(length);
    for (let i = 0; i < length; i++) {
      data[i] = Math.sin(k + i) * 2;
      grad[i] = Math.cos(3 * k + i);
    }
    const param: Param = { data, grad };
    if (name !== undefined) param.name = name;
    return param;
  });
}

function train(optimizer: AdamBase, params: readonly Param[]): Uint32Array[] {
  for (let step = 0; step < 4; step++) optimizer.step();
  return bitsOf(params.flatMap((p) => [p.data, f32(optimizer.state(p)).expAvg]));
}

describe('decay: false on a param', () => {
  test.each([
    ['AdamW', AdamW],
    ['Adam', Adam],
  ] as const)('%s: equals a group with weightDecay 0, bit for bit', (_, Optimizer) => {
    const masked = makeParams(['a', 'b', 'c']);
    masked[1]!.decay = false;
    masked[2]!.decay = true;
    const grouped = makeParams(['a', 'b', 'c']);
    const maskedResult = train(new Optimizer(masked, { weightDecay: 0.5, lr: 0.01 }), masked);
    const groupedResult = train(
      new Optimizer(
        [
          { params: [grouped[0]!, grouped[2]!], weightDecay: 0.5 },
          { params: [grouped[1]!], weightDecay: 0 },
        ],
        { lr: 0.01 },
      ),
      grouped,
    );
    expect(firstBitDifference(maskedResult, groupedResult)).toBeNull();
    // And the mask matters: decaying b gives other bits.
    const unmasked = makeParams(['a', 'b', 'c']);
    const unmaskedResult = train(new Optimizer(unmasked, { weightDecay: 0.5, lr: 0.01 }), unmasked);
    expect(firstBitDifference(unmaskedResult, maskedResult)).not.toBeNull();
  });

  test('must be a boolean', () => {
    const params = makeParams(['a', 'b']);
    params[1]!.decay = 0 as never;
    expect(() => new AdamW(params)).toThrow(TypeError);
    expect(() => new AdamW(params)).toThrow(/params\[1\]\.decay/);
  });
});

describe('isBiasOrNorm', () => {
  test.each([
    'fc.bias',
    'h.0.attn.c_attn.bias',
    'h.0.ln_1.weight',
    'ln_f.weight',
    'encoder.layer.0.attention.output.LayerNorm.weight',
    'layers.0.input_layernorm.weight',
    'model.norm.weight',
    'blocks.3.norm1.weight',
    'layer1.0.bn1.weight',
    'ln2.weight',
    'final_rmsnorm.scale',
  ])('exempts %s', (name) => {
    expect(isBiasOrNorm({ name, data: new Float32Array(1), grad: new Float32Array(1) })).toBe(true);
  });

  test.each(['h.0.attn.c_attn.weight', 'wte.weight', 'kiln.weight', 'lnx.weight', 'conv.weight'])(
    'decays %s',
    (name) => {
      expect(isBiasOrNorm({ name, data: new Float32Array(1), grad: new Float32Array(1) })).toBe(
        false,
      );
    },
  );

  test('decays unnamed params', () => {
    expect(isBiasOrNorm({ data: new Float32Array(1), grad: new Float32Array(1) })).toBe(false);
  });
});

describe('noDecay', () => {
  test('splits into a decayed group and a weightDecay 0 group, in order', () => {
    const params = makeParams(['h.0.weight', 'h.0.bias', undefined, 'ln_f.weight', 'head.weight']);
    const groups = noDecay(params);
    expect(groups).toEqual([
      { params: [params[0], params[2], params[4]] },
      { params: [params[1], params[3]], weightDecay: 0 },
    ]);
    // Usable as is: the same result as writing the groups by hand.
    const manual = makeParams(['h.0.weight', 'h.0.bias', undefined, 'ln_f.weight', 'head.weight']);
    const a = train(new AdamW(groups, { weightDecay: 0.3 }), params);
    const b = train(
      new AdamW(
        [
          { params: [manual[0]!, manual[2]!, manual[4]!] },
          { params: [manual[1]!, manual[3]!], weightDecay: 0 },
        ],
        { weightDecay: 0.3 },
      ),
      manual,
    );
    expect(firstBitDifference(a, b)).toBeNull();
  });

  test('takes a predicate, and leaves out an empty group', () => {
    const params = makeParams(['a', 'b', 'c']);
    expect(noDecay(params, (p) => p.name === 'b')).toEqual([
      { params: [params[0], params[2]] },
      { params: [params[1]], weightDecay: 0 },
    ]);
    expect(noDecay(params)).toEqual([{ params }]);
    expect(noDecay(params, () => true)).toEqual([{ params, weightDecay: 0 }]);
  });

  test('bad arguments are TypeErrors', () => {
    expect(() => noDecay('x' as never)).toThrow(/for params/);
    expect(() => noDecay([], 3 as never)).toThrow(/for isExempt/);
  });
});
