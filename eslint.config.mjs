// @ts-check
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

const TS_FILES = ['lib/**/*.ts', 'test/**/*.ts', 'bench/**/*.ts', 'examples/**/*.ts'];
const TEST_FILES = ['test/**/*.ts'];

/** Node.js globals for plain JS config/scripts (avoids a dependency on the `globals` package). */
const nodeGlobals = /** @type {const} */ ({
  console: 'readonly',
  process: 'readonly',
  Buffer: 'readonly',
  URL: 'readonly',
  setTimeout: 'readonly',
  clearTimeout: 'readonly',
  setInterval: 'readonly',
  clearInterval: 'readonly',
  setImmediate: 'readonly',
  clearImmediate: 'readonly',
});

const commonjsGlobals = /** @type {const} */ ({
  require: 'readonly',
  module: 'writable',
  exports: 'writable',
  __dirname: 'readonly',
  __filename: 'readonly',
});

export default tseslint.config(
  {
    name: 'simd-adamw/ignores',
    ignores: [
      'dist/',
      'build/',
      'build-asan/',
      'build-valgrind/',
      'build-fuzz/',
      'node_modules/',
      'coverage/',
      'bench/results/',
      'examples/out/',
    ],
  },

  // Plain JavaScript (jest.config.js, scripts/*.js, this file): basic rules, no type info.
  {
    name: 'simd-adamw/js-commonjs',
    files: ['**/*.js', '**/*.cjs'],
    extends: [eslint.configs.recommended],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'commonjs',
      globals: { ...nodeGlobals, ...commonjsGlobals },
    },
  },
  {
    name: 'simd-adamw/js-esm',
    files: ['**/*.mjs'],
    extends: [eslint.configs.recommended],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'module',
      globals: nodeGlobals,
    },
  },

  // TypeScript: type-aware strict rules, resolved through tsconfig.json via the project service.
  {
    name: 'simd-adamw/ts',
    files: TS_FILES,
    extends: [eslint.configs.recommended, ...tseslint.configs.strictTypeChecked],
    languageOptions: {
      parserOptions: {
        projectService: true,
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      // Numbers in error messages / bench output are fine; other non-strings still flagged.
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
    },
  },

  // Jest tests: relax rules that fight the jest API. `no-explicit-any` stays on.
  {
    name: 'simd-adamw/tests',
    files: TEST_FILES,
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      // expect(obj.method).toHaveBeenCalled() passes unbound methods on purpose.
      '@typescript-eslint/unbound-method': 'off',
      // jest.fn(() => {}) / mockImplementation(() => {}) are idiomatic.
      '@typescript-eslint/no-empty-function': 'off',
      // Assertions on typed-array elements (arr[i]!) and narrowing via expect() look
      // "unnecessary" to the type checker.
      '@typescript-eslint/no-unnecessary-condition': 'off',
      '@typescript-eslint/no-unnecessary-type-assertion': 'off',
      // expect(() => fn()).toThrow() and xs.forEach((x) => expect(x).toBe(y)) return void.
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true }],
    },
  },
);
