// Starts the real `tenantry serve` binary on a free port with its own embedded PostgreSQL under a
// throwaway DATA_DIR, and talks GraphQL to it over HTTP.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, chmodSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..', '..');

function freePort() {
  return new Promise((ok, fail) => {
    const probe = createServer();
    probe.once('error', fail);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => ok(port));
    });
  });
}

export async function startServer(env = {}) {
  const binary = process.env.TENANTRY_BIN || join(root, 'target', 'debug', 'tenantry');
  const dataDir = mkdtempSync(join(tmpdir(), 'tenantry-browser-'));
  // The embedded cluster runs as the `postgres` user when we are root: it must reach the folder.
  chmodSync(dataDir, 0o755);
  const port = await freePort();
  const inherited = { ...process.env };
  delete inherited.DATABASE_URL;
  const child = spawn(binary, ['serve'], {
    env: {
      ...inherited,
      DATA_DIR: dataDir,
      BIND: `127.0.0.1:${port}`,
      REQUIRE_VERIFIED_EMAIL: 'false',
      MAILER: `file:${join(dataDir, 'mail')}`,
      LOG_FORMAT: 'json',
      RUST_LOG: 'warn',
      ...env,
    },
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (chunk) => { log += chunk; });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`tenantry exited early:\n${log}`);
    try {
      const response = await fetch(`${url}/readyz`);
      if (response.ok) break;
    } catch {}
    if (Date.now() > deadline) throw new Error(`tenantry did not become ready:\n${log}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      rmSync(dataDir, { recursive: true, force: true });
    },
    log: () => log,
  };
}

export async function graphql(url, query, variables = {}, headers = {}) {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors) throw new Error(`${query}: ${JSON.stringify(body.errors)}`);
  return body.data;
}

export function chromiumPath() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
    try {
      return execFileSync('which', [name]).toString().trim();
    } catch {}
  }
  throw new Error('no Chromium found: apt-get install chromium (or set CHROMIUM)');
}
