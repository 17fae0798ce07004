// A strict JSON parser for untrusted file headers.
//
// JSON.parse keeps the last of two equal keys and recurses as deep as the input nests; a hostile
// safetensors header could use the first to smuggle a second definition of a tensor past a check
// and the second to exhaust the stack. This parser follows RFC 8259, returns objects as Maps (no
// prototype, no `__proto__` surprises), rejects duplicate keys and limits nesting depth. Numbers are
// returned as doubles; callers that need integers check Number.isSafeInteger.

export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
export type JsonObject = Map<string, JsonValue>;

/** Thrown for text that is not JSON, or has a duplicate key or too deep a nesting. */
export class JsonSyntaxError extends Error {
  constructor(
    message: string,
    readonly position: number,
  ) {
    super(`${message} at position ${position}`);
    this.name = 'JsonSyntaxError';
  }
}

const MAX_DEPTH = 64;

export function parseStrictJson(text: string): JsonValue {
  const parser = new Parser(text);
  parser.skipWhitespace();
  const value = parser.value(0);
  parser.skipWhitespace();
  if (parser.position !== text.length) parser.fail('Unexpected text after the JSON value');
  return value;
}

class Parser {
  position = 0;

  constructor(private readonly text: string) {}

  fail(message: string): never {
    throw new JsonSyntaxError(message, this.position);
  }

  skipWhitespace(): void {
    const text = this.text;
    let i = this.position;
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else break;
    }
    this.position = i;
  }

  value(depth: number): JsonValue {
    const c = this.text.charAt(this.position);
    if (c === '{') return this.object(depth + 1);
    if (c === '[') return this.array(depth + 1);
    if (c === '"') return this.string();
    if (c === '-' || (c >= '0' && c <= '9')) return this.number();
    if (this.text.startsWith('true', this.position)) return this.literal('true', true);
    if (this.text.startsWith('false', this.position)) return this.literal('false', false);
    if (this.text.startsWith('null', this.position)) return this.literal('null', null);
    return this.fail(c === '' ? 'Unexpected end of JSON' : 'Unexpected character');
  }

  literal<T>(word: string, value: T): T {
    this.position += word.length;
    return value;
  }

  object(depth: number): JsonObject {
    if (depth > MAX_DEPTH) this.fail(`JSON nested deeper than ${MAX_DEPTH} levels`);
    this.position++; // {
    const result: JsonObject = new Map();
    this.skipWhitespace();
    if (this.text[this.position] === '}') {
      this.position++;
      return result;
    }
    for (;;) {
      this.skipWhitespace();
      if (this.text[this.position] !== '"') this.fail('Expected a string key');
      const keyPosition = this.position;
      const key = this.string();
      if (result.has(key)) {
        throw new JsonSyntaxError(`Duplicate key ${JSON.stringify(key)}`, keyPosition);
      }
      this.skipWhitespace();
      if (this.text[this.position] !== ':') this.fail("Expected ':'");
      this.position++;
      this.skipWhitespace();
      result.set(key, this.value(depth));
      this.skipWhitespace();
      const next = this.text[this.position];
      this.position++;
      if (next === '}') return result;
      if (next !== ',') {
        this.position--;
        this.fail("Expected ',' or '}'");
      }
    }
  }

  array(depth: number): JsonValue[] {
    if (depth > MAX_DEPTH) this.fail(`JSON nested deeper than ${MAX_DEPTH} levels`);
    this.position++; // [
    const result: JsonValue[] = [];
    this.skipWhitespace();
    if (this.text[this.position] === ']') {
      this.position++;
      return result;
    }
    for (;;) {
      this.skipWhitespace();
      result.push(this.value(depth));
      this.skipWhitespace();
      const next = this.text[this.position];
      this.position++;
      if (next === ']') return result;
      if (next !== ',') {
        this.position--;
        this.fail("Expected ',' or ']'");
      }
    }
  }

  string(): string {
    const text = this.text;
    let i = this.position + 1; // after the opening quote
    let result = '';
    let runStart = i;
    for (;;) {
      if (i >= text.length) {
        this.position = i;
        this.fail('Unterminated string');
      }
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        result += text.slice(runStart, i);
        this.position = i + 1;
        return result;
      }
      if (c < 0x20) {
        this.position = i;
        this.fail('Unescaped control character in string');
      }
      if (c !== 0x5c) {
        i++;
        continue;
      }
      result += text.slice(runStart, i);
      const escape = text[i + 1];
      switch (escape) {
        case '"':
        case '\\':
        case '/':
          result += escape;
          break;
        case 'b':
          result += '\b';
          break;
        case 'f':
          result += '\f';
          break;
        case 'n':
          result += '\n';
          break;
        case 'r':
          result += '\r';
          break;
        case 't':
          result += '\t';
          break;
        case 'u': {
          const hex = text.slice(i + 2, i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) {
            this.position = i;
            this.fail('Invalid \\u escape');
          }
          result += String.fromCharCode(parseInt(hex, 16));
          i += 4;
          break;
        }
        default:
          this.position = i;
          this.fail('Invalid escape');
      }
      i += 2;
      runStart = i;
    }
  }

  number(): number {
    const match = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/.exec(
      this.text.slice(this.position, this.position + 400),
    );
    if (match === null) return this.fail('Invalid number');
    const literal = match[0];
    if (literal.length === 400) this.fail('Number literal too long');
    this.position += literal.length;
    return Number(literal);
  }
}
