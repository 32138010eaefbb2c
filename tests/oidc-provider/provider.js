// A real OpenID Provider (the certified `oidc-provider` package) for tenantry's SSO tests and
// for trying SSO locally (docs/sso.md). Configured by environment:
//   PORT (0: any; the chosen URL is printed as `listening <issuer>`), ISSUER_HOST (127.0.0.1),
//   CLIENTS: JSON array of { client_id, client_secret, redirect_uris }.
// Users: alice@example.com, bob@example.com, carol@other.test (verified emails),
// mallory@example.com (unverified). Log in by passing `login_hint=<email>` in the
// authorization request (no form: an interaction with a known hint signs in at once).
// Test controls (POST, JSON body):
//   /admin/rotate              new signing key (new kid) first in the key set, the old one kept
//   /admin/refuse {email}      the account stops existing: refresh grants for it fail
//   /admin/tamper {claims}     the next ID tokens carry these claims changed (aud, exp, nonce…)
//   /admin/user {email, email_verified}   add or change a user
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';
import * as jose from 'jose';

const host = process.env.ISSUER_HOST || '127.0.0.1';
const clients = JSON.parse(process.env.CLIENTS || '[]').map((c) => ({
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
  ...c,
}));

const users = new Map();
for (const [email, verified] of [
  ['alice@example.com', true], ['bob@example.com', true], ['carol@other.test', true],
  ['mallory@example.com', false],
]) users.set(email, { email_verified: verified, refused: false });

let keys = [];
let tamper = null;
let provider;

async function newKey() {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  return { ...jwk, kid: crypto.randomUUID(), alg: 'RS256', use: 'sig' };
}

function build(issuer) {
  const p = new Provider(issuer, {
    clients,
    jwks: { keys },
    pkce: { required: () => true },
    scopes: ['openid', 'email', 'profile', 'offline_access'],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    // As Okta, Entra ID, Google and Keycloak do: the ID token carries the scopes' claims.
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: false } },
    // Tests need refresh tokens without a consent screen.
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: async (ctx, sub) => {
      const user = users.get(sub);
      if (!user || user.refused) return undefined;
      return {
        accountId: sub,
        claims: async () => ({ sub, email: sub, email_verified: user.email_verified, name: sub.split('@')[0] }),
      };
    },
    ttl: { AccessToken: 600, IdToken: 600, RefreshToken: 86400, Interaction: 600, Session: 600, Grant: 86400 },
  });
  p.proxy = false;
  return p;
}

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const hint = details.params.login_hint;
  const user = hint && users.get(hint);
  if (!user || user.refused) {
    return provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'unknown user' });
  }
  const grant = new provider.Grant({ accountId: hint, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { login: { accountId: hint }, consent: { grantId } },
    { mergeWithLastSubmission: false });
}

// Re-signs the ID token in a token answer with the tampered claims, with the provider's own key.
async function tamperTokenAnswer(body) {
  const answer = JSON.parse(body);
  if (!answer.id_token || !tamper) return body;
  const claims = jose.decodeJwt(answer.id_token);
  const now = Math.floor(Date.now() / 1000);
  const changed = { ...claims, ...tamper };
  if (tamper.exp !== undefined) changed.exp = now + tamper.exp;
  if (tamper.iat !== undefined) changed.iat = now + tamper.iat;
  const key = await jose.importJWK(keys[0], 'RS256');
  answer.id_token = await new jose.SignJWT(changed).setProtectedHeader({ alg: 'RS256', kid: keys[0].kid }).sign(key);
  return JSON.stringify(answer);
}

function readJson(req) {
  return new Promise((resolve) => {
    let data = '';
    req.on('data', (c) => { data += c; });
    req.on('end', () => resolve(data ? JSON.parse(data) : {}));
  });
}

async function admin(req, res, path) {
  const body = await readJson(req);
  if (path === '/admin/rotate') {
    keys = [await newKey(), ...keys];
    provider = build(provider.issuer);
  } else if (path === '/admin/refuse') {
    users.get(body.email).refused = true;
  } else if (path === '/admin/tamper') {
    tamper = body.claims || null;
  } else if (path === '/admin/user') {
    users.set(body.email, { email_verified: body.email_verified, refused: false });
  } else {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ kid: keys[0].kid }));
}

keys = [await newKey()];
const server = http.createServer(async (req, res) => {
  try {
    const path = new URL(req.url, 'http://x').pathname;
    if (req.method === 'POST' && path.startsWith('/admin/')) return await admin(req, res, path);
    if (path.startsWith('/interaction/')) return await interaction(req, res);
    if (req.method === 'POST' && path === '/token' && tamper) {
      // Let the provider answer into a buffer, then change the ID token.
      const chunks = [];
      const { write, end, writeHead } = res;
      let status = 200;
      let headers = {};
      res.writeHead = (s, h) => { status = s; headers = h || {}; return res; };
      res.write = (c) => { chunks.push(Buffer.from(c)); return true; };
      res.end = async (c) => {
        if (c) chunks.push(Buffer.from(c));
        const out = await tamperTokenAnswer(Buffer.concat(chunks).toString());
        res.writeHead = writeHead; res.write = write; res.end = end;
        res.removeHeader('content-length');
        writeHead.call(res, status, headers);
        end.call(res, out);
      };
    }
    return provider.callback()(req, res);
  } catch (err) {
    console.error(err);
    res.writeHead(500).end(String(err));
  }
});
server.listen(Number(process.env.PORT || 0), host, () => {
  const issuer = `http://${host}:${server.address().port}`;
  provider = build(issuer);
  console.log(`listening ${issuer}`);
});
process.on('SIGTERM', () => process.exit(0));
