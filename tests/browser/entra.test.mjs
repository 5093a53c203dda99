// Entra ID mode end to end, against a fake identity provider on 127.0.0.1: the UI runs the
// authorization code flow with PKCE, gets an RS256 access token and uses it on the API.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { startHunter, launchBrowser, openApp, screenshot, eventually } from './helpers.mjs';

const CLIENT_ID = 'hunter-ui';
const API_SCOPE = 'api://hunter/access_as_user';
const AUDIENCE = 'api://hunter';
const KID = 'test-key-1';

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** A fake Microsoft identity platform: /authorize, /token, the JWKS; it checks what the UI sends. */
async function startFakeIdp() {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = publicKey.export({ format: 'jwk' });
  const codes = new Map();
  const seen = { authorize: [], token: [], problems: [] };
  let uiOrigin = '*';
  let base = '';

  function jwt(claims) {
    const header = { alg: 'RS256', typ: 'JWT', kid: KID };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    return `${input}.${b64url(sign('RSA-SHA256', Buffer.from(input), privateKey))}`;
  }
  function accessToken() {
    const now = Math.floor(Date.now() / 1000);
    return jwt({
      iss: `${base}/t/v2.0`, aud: AUDIENCE, exp: now + 3600, nbf: now, iat: now, ver: '2.0',
      sub: 'seller-subject', oid: '00000000-0000-0000-0000-0000000000aa', tid: 't', azp: CLIENT_ID,
      scp: 'access_as_user', name: 'Sam Seller', preferred_username: 'sam@fabrikam-partners.com',
    });
  }

  const server = createServer((req, res) => {
    const url = new URL(req.url, base);
    const cors = { 'Access-Control-Allow-Origin': uiOrigin, Vary: 'Origin' };
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { ...cors, 'Access-Control-Allow-Methods': 'POST', 'Access-Control-Allow-Headers': 'content-type' });
      res.end();
      return;
    }
    if (url.pathname === '/t/oauth2/v2.0/authorize') {
      const p = Object.fromEntries(url.searchParams);
      seen.authorize.push(p);
      const problems = [];
      if (p.client_id !== CLIENT_ID) problems.push(`client_id ${p.client_id}`);
      if (p.response_type !== 'code') problems.push(`response_type ${p.response_type}`);
      if (p.response_mode !== 'query') problems.push(`response_mode ${p.response_mode}`);
      if (p.code_challenge_method !== 'S256' || !p.code_challenge) problems.push('no S256 code_challenge');
      if (!p.state) problems.push('no state');
      const scopes = (p.scope || '').split(' ');
      for (const s of [API_SCOPE, 'openid', 'offline_access']) if (!scopes.includes(s)) problems.push(`scope lacks ${s}`);
      if (problems.length) {
        seen.problems.push(...problems);
        res.writeHead(302, { Location: `${p.redirect_uri}?error=invalid_request&error_description=${encodeURIComponent(problems.join('; '))}&state=${p.state}` });
        res.end();
        return;
      }
      const code = b64url(randomBytes(16));
      codes.set(code, { challenge: p.code_challenge, redirectUri: p.redirect_uri });
      res.writeHead(302, { Location: `${p.redirect_uri}?code=${code}&state=${encodeURIComponent(p.state)}&session_state=s` });
      res.end();
      return;
    }
    if (url.pathname === '/t/oauth2/v2.0/token' && req.method === 'POST') {
      let body = '';
      req.on('data', (chunk) => { body += chunk; });
      req.on('end', () => {
        const p = Object.fromEntries(new URLSearchParams(body));
        seen.token.push(p);
        const issued = codes.get(p.code);
        codes.delete(p.code);
        let error = null;
        if (!issued) error = 'unknown or reused code';
        else if (p.grant_type !== 'authorization_code') error = `grant_type ${p.grant_type}`;
        else if (p.client_id !== CLIENT_ID) error = `client_id ${p.client_id}`;
        else if (p.redirect_uri !== issued.redirectUri) error = 'redirect_uri differs from /authorize';
        else if (b64url(createHash('sha256').update(p.code_verifier || '').digest()) !== issued.challenge) error = 'PKCE verifier does not match the challenge';
        if (error) {
          seen.problems.push(error);
          res.writeHead(400, { ...cors, 'Content-Type': 'application/json' });
          res.end(JSON.stringify({ error: 'invalid_grant', error_description: error }));
          return;
        }
        res.writeHead(200, { ...cors, 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
        res.end(JSON.stringify({ token_type: 'Bearer', scope: API_SCOPE, expires_in: 3600, ext_expires_in: 3600, access_token: accessToken() }));
      });
      return;
    }
    if (url.pathname === '/t/discovery/v2.0/keys') {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ keys: [{ ...jwk, kid: KID, use: 'sig', alg: 'RS256' }] }));
      return;
    }
    if (url.pathname === '/t/v2.0/.well-known/openid-configuration') {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({
        issuer: `${base}/t/v2.0`, authorization_endpoint: `${base}/t/oauth2/v2.0/authorize`,
        token_endpoint: `${base}/t/oauth2/v2.0/token`, jwks_uri: `${base}/t/discovery/v2.0/keys`,
      }));
      return;
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${server.address().port}`;
  return {
    base,
    seen,
    accessToken,
    allowOrigin(origin) { uiOrigin = origin; },
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(resolve); }),
  };
}

describe('sign-in (Entra ID mode)', { timeout: 120_000 }, () => {
  let idp;
  let hunter;
  let browser;

  before(async () => {
    idp = await startFakeIdp();
    [hunter, browser] = await Promise.all([
      startHunter({
        env: {
          HUNTER_ENTRA_AUTHORITY: `${idp.base}/t/oauth2/v2.0`,
          HUNTER_ENTRA_UI_CLIENT_ID: CLIENT_ID,
          HUNTER_ENTRA_API_SCOPE: API_SCOPE,
          HUNTER_ENTRA_AUDIENCE: AUDIENCE,
          HUNTER_ENTRA_ISSUER: `${idp.base}/t/v2.0`,
          HUNTER_ENTRA_JWKS_URL: `${idp.base}/t/discovery/v2.0/keys`,
        },
      }),
      launchBrowser(),
    ]);
    idp.allowOrigin(hunter.base);
  });

  after(async () => {
    await browser?.close();
    await hunter?.stop();
    await idp?.close();
  });

  test('signs in with the authorization code flow + PKCE and shows the leads', async () => {
    const config = await (await fetch(`${hunter.base}/config.json`)).json();
    assert.equal(config.auth?.mode, 'entra',
      `the server side of Entra mode is missing: hunter-local started with HUNTER_ENTRA_* answers /config.json ${JSON.stringify(config)}, expected auth.mode "entra"`);
    assert.equal(config.auth.authority, `${idp.base}/t/oauth2/v2.0`);
    assert.equal(config.auth.clientId, CLIENT_ID);
    assert.deepEqual(config.auth.scopes, [API_SCOPE]);

    // The API accepts an access token from this identity provider (beside the API token).
    const first = await hunter.api('/leads');
    try {
      const viaJwt = await hunter.api('/leads', { bearer: idp.accessToken() });
      assert.deepEqual(viaJwt.items.map((i) => i.domain), first.items.map((i) => i.domain));
    } catch (err) {
      assert.fail(`the API does not accept the identity provider's RS256 access token: ${err.message}`);
    }

    const app = await openApp(browser, hunter, { signIn: false });
    try {
      const { page } = app;
      const bearers = [];
      page.on('request', (req) => {
        if (req.url().startsWith(`${hunter.base}/api/v1/`)) bearers.push(req.headers().authorization || '');
      });
      await page.goto(`${hunter.base}/#/leads`);
      await page.waitForSelector('#signin-button');
      await screenshot(page, 'signin-entra');
      await page.click('#signin-button');
      await page.waitForSelector('#leads-table tbody tr[data-domain], #signin:not([hidden])');
      const signinShown = await page.isVisible('#signin');
      assert.ok(!signinShown, `signed in, not back on the sign-in page: ${signinShown ? await page.textContent('#signin') : ''} ${JSON.stringify(idp.seen.problems)}`);

      assert.equal(idp.seen.authorize.length, 1);
      assert.equal(idp.seen.authorize[0].redirect_uri, `${hunter.base}/`);
      assert.equal(idp.seen.token.length, 1, 'one code redeemed');
      assert.deepEqual(idp.seen.problems, []);

      await eventually(async () => {
        const rows = await page.$$eval('#leads-table tbody tr[data-domain]', (trs) => trs.map((tr) => tr.dataset.domain));
        assert.deepEqual(rows, first.items.map((i) => i.domain));
      });
      assert.ok(!page.url().includes('code='), `the code left the address bar: ${page.url()}`);
      assert.ok(!page.url().includes('state='));
      assert.ok(bearers.length > 0 && bearers.every((b) => /^Bearer eyJ/.test(b)), 'the API got the access token');
      app.clean();
    } finally {
      await app.close();
    }
  });
});
