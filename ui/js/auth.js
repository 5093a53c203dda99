// Sign-in. Two modes, as /config.json says:
//  - "token": hunter-local prints a URL with #token=...; the token is kept in sessionStorage and
//    the fragment is replaced so it leaves the address bar.
//  - "entra": Microsoft Entra ID, authorization code flow with PKCE (S256), public SPA client.

const TOKEN_KEY = 'hunter.auth.token';
const EXPIRES_KEY = 'hunter.auth.expiresAt';
const PKCE_KEY = 'hunter.auth.pkce';

/** The error a sign-in attempt ended with, shown on the sign-in screen. */
export class SignInError extends Error {}

function base64url(bytes) {
  let bin = '';
  for (const b of new Uint8Array(bytes)) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomString(byteLength = 32) {
  const bytes = new Uint8Array(byteLength);
  crypto.getRandomValues(bytes);
  return base64url(bytes);
}

async function challengeOf(verifier) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return base64url(digest);
}

function redirectUri() {
  return `${location.origin}/`;
}

function cleanUrl(hash) {
  history.replaceState(null, '', `${location.pathname}${hash || '#/leads'}`);
}

function tokenAuth() {
  if (location.hash.startsWith('#token=')) {
    const token = decodeURIComponent(location.hash.slice('#token='.length).split('&')[0]);
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    cleanUrl('#/leads');
  }
  return {
    mode: 'token',
    getToken: () => sessionStorage.getItem(TOKEN_KEY),
    /** A pasted API token (hunter-local started with HUNTER_API_TOKEN prints no fragment). */
    useToken(token) {
      sessionStorage.setItem(TOKEN_KEY, token.trim());
    },
    forget() {
      sessionStorage.removeItem(TOKEN_KEY);
    },
    pendingError: null,
  };
}

function entraAuth(settings) {
  const authority = String(settings.authority || '').replace(/\/+$/, '');
  const clientId = settings.clientId;
  const scopes = [...(settings.scopes || []), 'openid', 'offline_access'];

  function getToken() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const expiresAt = Number(sessionStorage.getItem(EXPIRES_KEY) || 0);
    // Treat a token as gone a little before it expires.
    if (!token || !expiresAt || Date.now() > expiresAt - 30_000) return null;
    return token;
  }

  async function signIn() {
    const verifier = randomString(48);
    const state = randomString(24);
    const returnTo = location.hash && location.hash.startsWith('#/') ? location.hash : '#/leads';
    sessionStorage.setItem(PKCE_KEY, JSON.stringify({ verifier, state, returnTo }));
    const params = new URLSearchParams({
      client_id: clientId,
      response_type: 'code',
      redirect_uri: redirectUri(),
      response_mode: 'query',
      scope: scopes.join(' '),
      state,
      code_challenge: await challengeOf(verifier),
      code_challenge_method: 'S256',
    });
    location.assign(`${authority}/authorize?${params}`);
  }

  function forget() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(EXPIRES_KEY);
  }

  /** Finishes a sign-in when the identity provider sent the browser back with ?code=&state=. */
  async function completeRedirect() {
    const params = new URLSearchParams(location.search);
    if (!params.has('code') && !params.has('error')) return null;
    const saved = JSON.parse(sessionStorage.getItem(PKCE_KEY) || 'null');
    sessionStorage.removeItem(PKCE_KEY);
    const returnTo = saved?.returnTo || '#/leads';
    // The code leaves the address bar whatever happens next.
    history.replaceState(null, '', `${location.pathname}${returnTo}`);
    if (params.has('error')) {
      return new SignInError(`Sign-in failed: ${params.get('error_description') || params.get('error')}`);
    }
    if (!saved || params.get('state') !== saved.state) {
      return new SignInError('Sign-in failed: the answer from Microsoft did not match this sign-in (state). Please sign in again.');
    }
    let response;
    try {
      response = await fetch(`${authority}/token`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          client_id: clientId,
          grant_type: 'authorization_code',
          code: params.get('code'),
          redirect_uri: redirectUri(),
          code_verifier: saved.verifier,
        }),
      });
    } catch (err) {
      return new SignInError(`Sign-in failed: the token endpoint could not be reached (${err.message}).`);
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok || !body.access_token) {
      return new SignInError(`Sign-in failed: ${body.error_description || body.error || response.status}`);
    }
    const lifetime = Number(body.expires_in || 3600);
    sessionStorage.setItem(TOKEN_KEY, body.access_token);
    sessionStorage.setItem(EXPIRES_KEY, String(Date.now() + lifetime * 1000));
    return null;
  }

  return { mode: 'entra', getToken, signIn, forget, completeRedirect, pendingError: null };
}

/** Reads the auth settings of /config.json and finishes any sign-in in progress. */
export async function initAuth(config) {
  const settings = config?.auth || { mode: 'token' };
  if (settings.mode === 'entra') {
    const auth = entraAuth(settings);
    auth.pendingError = await auth.completeRedirect();
    return auth;
  }
  return tokenAuth();
}
