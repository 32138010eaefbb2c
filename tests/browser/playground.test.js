// The playground in a real headless Chromium: it loads with no network but the server's own,
// signs in through its form, runs a query against /graphql and shows the result.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { startServer, graphql, chromiumPath } from './server.js';

const screenshots = resolve(import.meta.dirname, 'screenshots');
let server;
let browser;
let token;
const email = 'ann@example.com';
const password = 'correct horse battery';

before(async () => {
  server = await startServer();
  const signUp = await graphql(
    server.url,
    'mutation($e: String!, $p: String!) { signUp(email: $e, password: $p, name: "Ann") { accessToken } }',
    { e: email, p: password },
  );
  await graphql(
    server.url,
    'mutation { createTenant(name: "Acme", subdomain: "acme") { id } }',
    {},
    { authorization: `Bearer ${signUp.signUp.accessToken}` },
  );
  token = signUp.signUp.accessToken;
  await graphql(
    server.url,
    'mutation { createProject(name: "Rocket") { id } }',
    {},
    { authorization: `Bearer ${signUp.signUp.accessToken}`, 'x-tenant': 'acme' },
  );
  browser = await chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function openPlayground(query) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const offsite = [];
  // Everything the page loads must come from the server itself: no CDN.
  page.on('request', (request) => {
    if (!request.url().startsWith(server.url) && !request.url().startsWith('data:')) offsite.push(request.url());
  });
  await page.addInitScript((q) => localStorage.setItem('graphiql:query', q), query);
  await page.goto(`${server.url}/playground`);
  await page.waitForSelector('.graphiql-container');
  return { page, offsite };
}

async function signInThroughTheForm(page) {
  await page.fill('.session-bar input[type=email]', email);
  await page.fill('.session-bar input[type=password]', password);
  await page.click('.session-bar button[type=submit]');
  await page.waitForSelector('.session-bar .signed-in');
  await page.fill('.session-bar input[name=tenant]', 'acme');
}

async function responseText(page) {
  return page.$eval('.graphiql-response', (el) => el.textContent);
}

test('the playground signs in, runs a query on the tenant and shows the result', async () => {
  const { page, offsite } = await openPlayground('query Projects { projects { name } }');
  await signInThroughTheForm(page);
  await page.click('.graphiql-execute-button');
  await page.waitForFunction(() => document.querySelector('.graphiql-response')?.textContent.includes('Rocket'));
  assert.match(await responseText(page), /"name": "Rocket"/);
  mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: join(screenshots, 'query.png') });
  assert.deepEqual(offsite, [], 'the playground fetched something from outside the server');
  await page.close();
});

test('the playground subscribes to usageUpdated over /graphql/ws and shows a live update', async () => {
  const subscription = 'subscription Usage { usageUpdated { period plan { id } metrics { metric value } } }';
  const { page, offsite } = await openPlayground(subscription);
  await signInThroughTheForm(page);
  await page.click('.graphiql-execute-button');
  // The subscription is open once the socket has been acknowledged; requests made from here on
  // are counted, flushed (USAGE_FLUSH_MS) and pushed to the page.
  const headers = { authorization: `Bearer ${token}`, 'x-tenant': 'acme' };
  const deadline = Date.now() + 30_000;
  let text = '';
  while (!text.includes('api_requests')) {
    assert.ok(Date.now() < deadline, `no usage update reached the page; the response pane shows: ${text}`);
    await graphql(server.url, '{ projects { name } }', {}, headers);
    await new Promise((r) => setTimeout(r, 500));
    text = await responseText(page);
  }
  // The pane shows the editor's text (not exact JSON: fold markers and its close button).
  assert.match(text, /"period": "MONTH"/);
  const counted = text.match(/"metric": "api_requests",\s*"value": "?(\d+)/);
  assert.ok(counted && Number(counted[1]) > 0, `api_requests should count the queries: ${text}`);
  await page.screenshot({ path: join(screenshots, 'subscription.png') });
  assert.deepEqual(offsite, [], 'the playground fetched something from outside the server');
  await page.close();
});
