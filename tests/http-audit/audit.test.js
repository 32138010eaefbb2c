// The graphql-http audit suite (GraphQL over HTTP spec) against the real `tenantry serve`: every
// MUST and SHOULD audit must pass; MAY audits are reported only. The audit's requests name no
// tenant, so they reach the control plane, where `{ __typename }` needs no sign-in.
//
// TENANTRY_URL=http://host:port/graphql audits a server that is already running; otherwise the
// binary in target/debug is started with its own embedded PostgreSQL (as tests/browser does).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { serverAudits } from 'graphql-http';
import { startServer } from '../browser/server.js';

let server;
let url = process.env.TENANTRY_URL;

before(async () => {
  if (!url) {
    server = await startServer();
    url = `${server.url}/graphql`;
  }
});

after(async () => {
  await server?.stop();
});

test('graphql-http server audits: every MUST and SHOULD passes', async (t) => {
  const failed = [];
  for (const audit of serverAudits({ url: () => url })) {
    const result = await audit.fn();
    const required = !audit.name.startsWith('MAY');
    await t.test(`${audit.id} ${audit.name}`, () => {
      if (result.status !== 'ok') {
        const detail = `${result.reason ?? ''} ${JSON.stringify(result.response?.status ?? '')}`;
        if (required) {
          failed.push(`${audit.name}: ${detail}`);
          assert.fail(`${audit.name}: ${detail}`);
        } else {
          t.diagnostic(`optional audit not met: ${audit.name}: ${detail}`);
        }
      }
    });
  }
  assert.deepEqual(failed, []);
});
