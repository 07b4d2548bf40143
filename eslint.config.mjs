// ESLint (issue 24 item 3): typescript-eslint's type-aware recommended rules on every TypeScript
// file, plus rules that catch real bugs; eslint-config-prettier last, so layout is Prettier's alone.
// `npm run lint`, run by test/run-all.sh. A rule is turned off only with its reason beside it.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import tseslint from 'typescript-eslint';

const node = Object.fromEntries(
  [
    'require',
    'module',
    'exports',
    '__dirname',
    '__filename',
    'process',
    'console',
    'Buffer',
    'URL',
    'URLSearchParams',
    'setTimeout',
    'clearTimeout',
    'setInterval',
    'clearInterval',
    'setImmediate',
    'clearImmediate',
    'queueMicrotask',
    'fetch',
    'Response',
    'Request',
    'Headers',
    'AbortController',
    'AbortSignal',
    'TextEncoder',
    'TextDecoder',
    'performance',
    'structuredClone',
    'globalThis',
  ].map((name) => [name, 'readonly']),
);
const browser = Object.fromEntries(
  [
    'window',
    'document',
    'sessionStorage',
    'localStorage',
    'location',
    'history',
    'navigator',
    'console',
    'fetch',
    'URL',
    'URLSearchParams',
    'setTimeout',
    'clearTimeout',
    'setInterval',
    'clearInterval',
    'Intl',
    'HTMLElement',
    'Node',
    'Event',
  ].map((name) => [name, 'readonly']),
);

export default tseslint.config(
  {
    ignores: [
      '**/node_modules/',
      '**/dist/',
      'logs/',
      'coverage/',
      '.store/',
      'test/bin/',
      'libs/devstore/bin/',
      // Generated: ts-proto's output and the dashboards' JSON (checked stale by their own tests).
      'libs/proto/src/gen/',
      'deploy/grafana/dashboards/',
    ],
  },
  // A disable comment that no longer silences anything is an error: the reasons stay true.
  { linterOptions: { reportUnusedDisableDirectives: 'error' } },
  js.configs.recommended,
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    // One program for every package and test (tsconfig.test.json, `@ptw/*` mapped to the sources) rather
    // than the project service's program per package: the same rules in under half the time (CI, issue 24).
    languageOptions: { parserOptions: { project: ['./tsconfig.test.json'], tsconfigRootDir: import.meta.dirname } },
    rules: {
      // Bugs the recommended set leaves to the author.
      '@typescript-eslint/no-floating-promises': ['error', { ignoreVoid: true }],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/return-await': ['error', 'in-try-catch'],
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      // A caught error or an abort reason (typed unknown/any) is passed on as it came; literals are refused.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingAny: true, allowThrowingUnknown: true }],
      '@typescript-eslint/only-throw-error': 'error',
      'no-self-compare': 'error',
      'no-template-curly-in-string': 'error',
      'no-unreachable-loop': 'error',
      'no-constant-binary-expression': 'error',
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      // A `let` read by a callback set up before its one assignment (a signal handler) cannot be const.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // tsc's noUnusedLocals/noUnusedParameters already check this, with the same `_` convention.
      '@typescript-eslint/no-unused-vars': 'off',
      // ObjectId prints its hex id, which is what every such template means.
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allow: [{ from: 'package', package: 'bson', name: 'ObjectId' }] }],
    },
  },
  {
    files: ['**/*.test.ts', 'test/**/*.ts'],
    rules: {
      // Tests read JSON answers, log lines and fuzzed values of any shape: the expectation on the
      // value is the check, and typing each body only to read one field would be noise.
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      // Callbacks and fakes are async to match the interface they stand in for (jest hooks, gRPC handlers).
      '@typescript-eslint/require-await': 'off',
      // koa-ratelimit's Redis driver ships no types: the throttle tests require it to compare with the stock script.
      '@typescript-eslint/no-require-imports': ['error', { allow: ['^koa-ratelimit/limiter/redis$'] }],
    },
  },
  // The dashboards' generator and the browser suites have programs of their own (node16 modules; DOM types).
  {
    files: ['deploy/grafana/**/*.ts'],
    languageOptions: { parserOptions: { project: ['./deploy/grafana/tsconfig.json'] } },
  },
  {
    files: ['test/browser/**/*.ts'],
    languageOptions: { parserOptions: { project: ['./test/browser/tsconfig.json'] } },
  },
  {
    // Plain JavaScript (benches, load programs, code generators, the admin console): no types to lint with.
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { sourceType: 'commonjs', globals: node },
    rules: { 'no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true }] },
  },
  { files: ['**/*.mjs'], languageOptions: { sourceType: 'module' } },
  { files: ['gateway/admin/**/*.js'], languageOptions: { sourceType: 'script', globals: browser } },
  prettier,
);
