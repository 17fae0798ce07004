// The strict JSON parser behind safetensors headers: agrees with JSON.parse on valid JSON, rejects
// what JSON.parse rejects, and also rejects duplicate keys and runaway nesting.
import { type JsonValue, JsonSyntaxError, parseStrictJson } from '../lib/format/strict-json';

/** JSON.parse's result with objects as Maps, the parser's representation. */
function withMaps(value: unknown): JsonValue {
  if (Array.isArray(value)) return value.map(withMaps);
  if (value !== null && typeof value === 'object') {
    return new Map(Object.entries(value).map(([key, entry]) => [key, withMaps(entry)]));
  }
  return value as JsonValue;
}

// A seeded generator of JSON values: every kind, nested, with awkward strings and numbers.
function randomJson(seed: number): unknown {
  let state = seed;
  const random = (): number => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state / 2 ** 32;
  };
  const strings = ['', 'a', '__proto__', 'é😀', '"\\/', '\b\f\n\r\t\u0001', 'key with spaces'];
  const numbers = [0, -0, 1, -1, 0.1, 1e-8, 5e-324, 1.7976931348623157e308, 2 ** 53 + 2, -123.456];
  const value = (depth: number): unknown => {
    const kind = Math.floor(random() * (depth > 4 ? 5 : 7));
    const pick = <T>(list: T[]): T => list[Math.floor(random() * list.length)]!;
    switch (kind) {
      case 0:
        return null;
      case 1:
        return random() < 0.5;
      case 2:
        return random() < 0.5 ? pick(numbers) : (random() - 0.5) * 10 ** Math.floor(random() * 40);
      case 3:
      case 4:
        return pick(strings) + String(Math.floor(random() * 100));
      case 5:
        return Array.from({ length: Math.floor(random() * 4) }, () => value(depth + 1));
      default:
        return Object.fromEntries(
          Array.from({ length: Math.floor(random() * 4) }, (_, i) => [
            pick(strings) + String(i),
            value(depth + 1),
          ]),
        );
    }
  };
  return value(0);
}

describe('parseStrictJson', () => {
  it('gives what JSON.parse gives for any JSON text, compact or indented', () => {
    for (let seed = 1; seed <= 500; seed++) {
      const text = JSON.stringify(randomJson(seed), null, [undefined, 2, '\t'][seed % 3]);
      expect(parseStrictJson(text)).toEqual(withMaps(JSON.parse(text)));
    }
  });

  it('decodes every escape', () => {
    const text = '"\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uD83D\\uDE00"';
    expect(parseStrictJson(text)).toBe(JSON.parse(text));
  });

  it.each([
    '',
    ' ',
    '{',
    '{"a":}',
    '{"a" 1}',
    '{a:1}',
    '{"a":1,}',
    '[1,]',
    '[1 2]',
    '01',
    '1.',
    '.5',
    '+1',
    '-',
    '1e',
    'tru',
    'nul',
    "'a'",
    'NaN',
    'Infinity',
    '"\u0001"',
    '"\\x"',
    '"\\u12"',
    '"abc',
    '{}x',
    '{} {}',
  ])('rejects %j like JSON.parse', (text) => {
    expect(() => JSON.parse(text) as unknown).toThrow(SyntaxError);
    expect(() => parseStrictJson(text)).toThrow(JsonSyntaxError);
  });

  it.each(['{"a":1,"a":2}', '{"a":1,"\\u0061":2}', '[{"x":{"b":1,"c":2,"b":3}}]'])(
    'rejects the duplicate key in %s, which JSON.parse accepts',
    (text) => {
      expect(() => JSON.parse(text) as unknown).not.toThrow();
      expect(() => parseStrictJson(text)).toThrow(/Duplicate key/);
    },
  );

  it('accepts 64 levels of nesting and rejects 65, or 100000, without exhausting the stack', () => {
    expect(parseStrictJson('['.repeat(64) + ']'.repeat(64))).toBeInstanceOf(Array);
    expect(() => parseStrictJson('['.repeat(65) + ']'.repeat(65))).toThrow(/deeper than 64/);
    expect(() => parseStrictJson('{"a":'.repeat(100000))).toThrow(JsonSyntaxError);
  });

  it('returns objects as Maps, so a "__proto__" key is plain data', () => {
    const value = parseStrictJson('{"__proto__":{"polluted":true}}');
    expect(value).toBeInstanceOf(Map);
    expect((value as Map<string, JsonValue>).get('__proto__')).toEqual(
      new Map([['polluted', true]]),
    );
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('says where the error is', () => {
    expect(() => parseStrictJson('{"a":1,"a":2}')).toThrow('Duplicate key "a" at position 7');
    expect(() => parseStrictJson('[1,2,x]')).toThrow('Unexpected character at position 5');
  });
});
