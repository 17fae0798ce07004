// bitsandbytes' signed and unsigned dynamic maps, rebuilt here from their definition (the formula of
// create_dynamic_map and the float32 arithmetic torch does for it on x86-64, test/helpers/bnb-maps.ts),
// equal bit for bit the fixture copied from shared/bnb-dynamic-maps.json and the tables the addon
// quantizes with (native.dynamicMaps). The fused multiply-add emulation the rebuild depends on is
// itself checked against exact BigInt arithmetic.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { types } from 'node:util';

import { native } from '../lib/core/native';
import { createDynamicMap, torchLinspaceFloat32 } from './helpers/bnb-maps';
import { exactFmaFloat32, fmaFloat32 } from './helpers/float32-exact';
import { hex, mulberry32 } from './helpers/random';

const { fround } = Math;

interface MapFixture {
  format: string;
  signed: { bits: string[] };
  unsigned: { bits: string[] };
}

const fixture = JSON.parse(
  fs.readFileSync(path.join(__dirname, 'fixtures', 'bnb-dynamic-maps.json'), 'utf8'),
) as MapFixture;

function bitsOf(values: Float32Array): string[] {
  return Array.from(new Uint32Array(values.slice().buffer), hex);
}

/** Indices where two lists of bit strings differ, with both values, for a failure message. */
function differences(actual: readonly string[], expected: readonly string[]): string[] {
  const out: string[] = [];
  const n = Math.max(actual.length, expected.length);
  for (let i = 0; i < n; i++) {
    if (actual[i] !== expected[i]) out.push(`[${i}] ${actual[i]} instead of ${expected[i]}`);
  }
  return out;
}

function float32(random: () => number, exponentRange: number): number {
  const sign = random() < 0.5 ? -1 : 1;
  return fround(sign * (1 + random()) * 2 ** Math.floor((2 * random() - 1) * exponentRange));
}

describe('the float32 fused multiply-add emulation', () => {
  test('equals the exact rounding of a * b + c on random operands, cancellation included', () => {
    const random = mulberry32(0x5eed);
    const failures: string[] = [];
    for (let k = 0; k < 4000; k++) {
      const a = float32(random, 40);
      const b = float32(random, 40);
      // Half the cases cancel most of a * b (c is a * b rounded, negated), where the error term
      // decides the result.
      const c = k % 2 === 0 ? float32(random, 80) : -fround(a * b) * (1 + (random() - 0.5) * 1e-6);
      const cf = fround(c);
      const got = fmaFloat32(a, b, cf);
      const want = exactFmaFloat32(a, b, cf);
      if (!Object.is(got, want)) failures.push(`fma(${a}, ${b}, ${cf}) = ${got}, exact ${want}`);
    }
    expect(failures).toEqual([]);
  });

  test('rounds a sum a hair above, exactly at, and a hair below a float32 midpoint correctly', () => {
    // c + 2^(e-24) * b with c = 1.5 * 2^e' sits at the midpoint between c and its successor for b = 1
    // (a tie, to even: c stays, its significand is even), above it for b = 1 + 2^-23 (up) and below
    // for b = 1 - 2^-24 (down): the double sum alone rounds the last two the same way.
    for (const exponent of [-20, 0, 7, 30]) {
      const c = fround(1.5 * 2 ** exponent);
      const halfUlp = 2 ** (exponent - 24);
      const next = c + 2 * halfUlp;
      expect(fmaFloat32(halfUlp, 1, c)).toBe(c);
      expect(fmaFloat32(halfUlp, fround(1 + 2 ** -23), c)).toBe(next);
      expect(fmaFloat32(halfUlp, fround(1 - 2 ** -24), c)).toBe(c);
      expect(fmaFloat32(-halfUlp, fround(1 + 2 ** -23), -c)).toBe(-next);
      const odd = fround(c + 2 * halfUlp); // odd significand: the tie goes up to even
      expect(fmaFloat32(halfUlp, 1, odd)).toBe(odd + 2 * halfUlp);
      for (const b of [1, fround(1 + 2 ** -23), fround(1 - 2 ** -24)]) {
        expect(fmaFloat32(halfUlp, b, c)).toBe(exactFmaFloat32(halfUlp, b, c));
        expect(fmaFloat32(halfUlp, b, odd)).toBe(exactFmaFloat32(halfUlp, b, odd));
      }
    }
  });

  test('handles subnormal results and signed zeros like IEEE', () => {
    const tiny = 2 ** -149;
    expect(fmaFloat32(tiny, 0.5, 0)).toBe(exactFmaFloat32(tiny, 0.5, 0));
    expect(exactFmaFloat32(tiny, 0.5, 0)).toBe(0); // the tie 2^-150 rounds to even: 0
    expect(exactFmaFloat32(tiny, 1.5, 0)).toBe(2 * tiny);
    expect(fmaFloat32(tiny, 1.5, 0)).toBe(2 * tiny);
    expect(Object.is(exactFmaFloat32(-0, 1, -0), -0)).toBe(true);
    expect(Object.is(exactFmaFloat32(1, 1, -1), 0)).toBe(true);
  });
});

describe('torch.linspace(0.1, 1, n) in float32 as the x86-64 CPU kernel computes it', () => {
  test('starts at float32(0.1), ends at exactly 1 and increases', () => {
    for (const n of [2, 3, 5, 9, 17, 33, 65, 129]) {
      const values = torchLinspaceFloat32(0.1, 1, n);
      expect(values[0]).toBe(fround(0.1));
      expect(values[n - 1]).toBe(1);
      for (let i = 1; i < n; i++) expect(values[i]!).toBeGreaterThan(values[i - 1]!);
    }
  });
});

describe('bitsandbytes dynamic maps rebuilt from create_dynamic_map', () => {
  test('the fixture is a copy of shared/bnb-dynamic-maps.json (when the shared folder is there)', () => {
    const shared = path.join(__dirname, '..', '..', 'shared', 'bnb-dynamic-maps.json');
    expect(fixture.format).toBe('bnb-dynamic-maps-v1');
    if (fs.existsSync(shared)) {
      expect(fs.readFileSync(shared, 'utf8')).toBe(
        fs.readFileSync(path.join(__dirname, 'fixtures', 'bnb-dynamic-maps.json'), 'utf8'),
      );
    }
  });

  for (const kind of ['signed', 'unsigned'] as const) {
    describe(kind, () => {
      const rebuilt = createDynamicMap(kind === 'signed');

      test('has 256 ascending values from -1 or 0 to 1, with 0 and 1 among them', () => {
        expect(rebuilt.length).toBe(256);
        for (let i = 1; i < 256; i++) expect(rebuilt[i]!).toBeGreaterThan(rebuilt[i - 1]!);
        expect(rebuilt[255]).toBe(1);
        expect(rebuilt.includes(0)).toBe(true);
        if (kind === 'signed') {
          expect(rebuilt[0]!).toBeLessThan(-0.99);
          // The negative half is the positive half negated (the same float32 products).
          const positives = Array.from(rebuilt).filter((v) => v > 0 && v < 1);
          const negatives = Array.from(rebuilt).filter((v) => v < 0);
          expect(negatives.map((v) => -v).sort((a, b) => a - b)).toEqual(positives);
        } else {
          expect(rebuilt[0]).toBe(0);
        }
      });

      test('equals the fixture bit for bit', () => {
        expect(differences(bitsOf(rebuilt), fixture[kind].bits)).toEqual([]);
      });

      test('differs from the fixture when linspace is evaluated without fused multiply-adds', () => {
        // fround(start + fround(step * idx)) instead of one fma: the C++ rebuild under
        // -ffp-contract=off that the fixture's note warns about. A rebuild that ignored the fusion
        // would fail the test above.
        const unfusedLinspace = (start: number, end: number, steps: number): Float32Array => {
          const first = fround(start);
          const step = fround(fround(end - first) / (steps - 1));
          const half = Math.floor(steps / 2);
          return Float32Array.from({ length: steps }, (_, idx) =>
            idx < half
              ? fround(first + fround(step * idx))
              : fround(end - fround(step * (steps - idx - 1))),
          );
        };
        const unfused = createDynamicMap(kind === 'signed', unfusedLinspace);
        expect(differences(bitsOf(unfused), fixture[kind].bits).length).toBeGreaterThan(10);
      });

      test('equals the table the addon quantizes with (native.dynamicMaps)', () => {
        const table = native.dynamicMaps[kind];
        // The addon's arrays come from the main realm, not jest's: no instanceof.
        expect(types.isFloat32Array(table)).toBe(true);
        expect(differences(bitsOf(table), fixture[kind].bits)).toEqual([]);
      });
    });
  }
});
