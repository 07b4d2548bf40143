/**
 * Jest projects by what a test needs (docs/testing.md):
 *   unit       `*.test.ts` beside the code: nothing outside the process (no store, Redis, socket or child process).
 *   component  `*.component.test.ts` beside the code: real parts in-process (a store of its own, Redis with a key
 *              prefix of its own, loopback sockets on port 0, Debian tools). Isolated, so they run in parallel too.
 *   e2e        test/e2e, test/fuzz, test/resilience: the built system as processes (`npx tsc -b` first).
 *   browser    test/browser: the gateway driven by Debian's headless chromium.
 * Run one project with the path first, then the project: `npx jest libs/common --selectProjects unit`.
 */
const base = {
  transform: { '^.+\\.[tj]s$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.json', diagnostics: false }] },
  testEnvironment: 'node',
  moduleNameMapper: {
    '^@ptw/(proto|common|db|devstore|domain)$': '<rootDir>/libs/$1/src',
    '^@ptw/(proto|common|db|devstore|domain)/dist/(.*)$': '<rootDir>/libs/$1/src/$2',
  },
  // Agenda 6 is ESM-only: ts-jest transforms it (allowJs).
  transformIgnorePatterns: ['/node_modules/(?!(agenda|@agendajs)/)'],
};

const besideTheCode = ['<rootDir>/libs/*/src/**/', '<rootDir>/services/*/src/**/', '<rootDir>/gateway/src/**/'];

/** @type {import('jest').Config} */
module.exports = {
  projects: [
    {
      ...base,
      displayName: 'unit',
      testMatch: [...besideTheCode.map((d) => `${d}*.test.ts`), '<rootDir>/test/docs/**/*.test.ts'],
      testPathIgnorePatterns: ['/node_modules/', '\\.component\\.test\\.ts$'],
    },
    {
      ...base,
      displayName: 'component',
      testMatch: besideTheCode.map((d) => `${d}*.component.test.ts`),
    },
    {
      ...base,
      displayName: 'e2e',
      testMatch: ['<rootDir>/test/{e2e,fuzz,resilience}/**/*.test.ts'],
      setupFilesAfterEnv: ['<rootDir>/test/support/openapi-check.ts'],
    },
    {
      ...base,
      displayName: 'browser',
      testMatch: ['<rootDir>/test/browser/**/*.test.ts'],
      setupFilesAfterEnv: ['<rootDir>/test/support/openapi-check.ts'],
    },
  ],
};
