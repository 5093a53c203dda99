// The API client: base URL, bearer token, the error envelope as a typed error, and a 401 hook.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

/** Builds "?a=1&b=2" from an object, leaving out empty values. */
export function queryString(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v == null || v === '' || v === false) continue;
    q.set(k, String(v));
  }
  const text = q.toString();
  return text ? `?${text}` : '';
}

async function errorFrom(response) {
  let code = `http_${response.status}`;
  let message = `${response.status} ${response.statusText}`.trim();
  const text = await response.text().catch(() => '');
  try {
    const body = JSON.parse(text);
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    if (text) message = text.slice(0, 300);
  }
  return new ApiError(response.status, code, message);
}

/**
 * createApi({base, getToken, onUnauthorized}) → {get, post, download}
 * A 401 calls onUnauthorized() (the app then shows its sign-in state) and still throws.
 */
export function createApi({ base, getToken, onUnauthorized }) {
  async function request(method, path, { query, body, raw } = {}) {
    const headers = { Accept: raw ? '*/*' : 'application/json' };
    const token = getToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(`${base}${path}${queryString(query)}`, init);
    } catch (err) {
      throw new ApiError(0, 'network', `Hunter could not be reached (${err.message}). Is hunter-local still running?`);
    }
    if (response.status === 401) {
      const error = await errorFrom(response);
      onUnauthorized?.(error);
      throw error;
    }
    if (!response.ok) throw await errorFrom(response);
    if (raw) return response;
    if (response.status === 204) return null;
    return response.json();
  }

  return {
    get: (path, query) => request('GET', path, { query }),
    post: (path, body) => request('POST', path, { body }),
    /** GET as a Blob, plus the file name the server suggested. */
    async download(path, query) {
      const response = await request('GET', path, { query, raw: true });
      const disposition = response.headers.get('content-disposition') || '';
      const match = /filename="?([^";]+)"?/i.exec(disposition);
      return { blob: await response.blob(), filename: match ? match[1] : null };
    },
  };
}

/** Lead domains and referral ids go into paths: always encoded. */
export const seg = encodeURIComponent;
