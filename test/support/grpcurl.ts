import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../../libs/devstore/src/stack';

/** The grpcurl the tests drive: an independent reflection client (Go, jhump/protoreflect), pinned. */
export const GRPCURL_VERSION = 'v1.9.3';
const BIN_DIR = path.join(REPO_ROOT, 'test', 'bin');
const BIN = path.join(BIN_DIR, `grpcurl-${GRPCURL_VERSION}`);

/** The Go toolchain: GO, else `go` on the PATH, else /usr/local/go (the Makefile's fallback too). */
function goBinary(): string {
  if (process.env.GO) return process.env.GO;
  return spawnSync('go', ['version']).status === 0 ? 'go' : '/usr/local/go/bin/go';
}

/**
 * Path of the pinned grpcurl binary in test/bin/ (gitignored): `make test` builds it during its set-up
 * (Makefile `grpcurl`, which reads GRPCURL_VERSION from this file); when it is missing (a suite run
 * alone) it is built here with `go install` (about a minute with an empty module cache).
 */
export function ensureGrpcurl(): string {
  if (fs.existsSync(BIN)) return BIN;
  fs.mkdirSync(BIN_DIR, { recursive: true });
  const gobin = fs.mkdtempSync(path.join(BIN_DIR, '.build-'));
  try {
    const r = spawnSync(goBinary(), ['install', `github.com/fullstorydev/grpcurl/cmd/grpcurl@${GRPCURL_VERSION}`], {
      env: { ...process.env, GOBIN: gobin, GOFLAGS: '-buildvcs=false' },
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`go install grpcurl@${GRPCURL_VERSION} failed: ${r.error?.message ?? r.stderr}`);
    fs.renameSync(path.join(gobin, 'grpcurl'), BIN);
  } finally {
    fs.rmSync(gobin, { recursive: true, force: true });
  }
  return BIN;
}

export interface GrpcurlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs grpcurl with `args`, never throwing: the exit code and both outputs are the answer. */
export function grpcurl(args: string[], timeoutMs = 20_000): Promise<GrpcurlResult> {
  return new Promise((resolve) => {
    execFile(ensureGrpcurl(), args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
