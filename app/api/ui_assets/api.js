// slotserve /ui: the JSON API as the page calls it. The API key, when the server needs one, lives in this tab's
// sessionStorage only and goes out as a Bearer header.

export const KEY_ITEM = "slotserve.key";
const TIMEOUT_MS = 4000; // a read unanswered this long counts as the server being gone
// the API lives next to the page: this module is at <base>ui/assets/api.js, so a reverse proxy's prefix is kept
const BASE = new URL("../../", import.meta.url).href;

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

export async function api(method, path, body) {
  const headers = {Accept: "application/json"};
  const key = sessionStorage.getItem(KEY_ITEM);
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const abort = new AbortController();
  // reads time out; a load may rightly take long, and the server finishes it even if the page gives up
  const timer = method === "GET" ? setTimeout(() => abort.abort(), TIMEOUT_MS) : 0;
  let response, text;
  try {
    response = await fetch(BASE + path, {method, headers, cache: "no-store", signal: abort.signal,
                                         body: body === undefined ? undefined : JSON.stringify(body)});
    text = await response.text();
  } catch (err) {
    throw new ApiError(0, "unreachable", "The server cannot be reached.");
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (err) { data = null; }
  if (response.ok) {
    if (data === null) throw new ApiError(response.status, "not_json", `HTTP ${response.status} without JSON: is this slotserve?`);
    return data;
  }
  const error = data && data.error;
  if (error && typeof error === "object") throw new ApiError(response.status, error.code, error.message, error);
  throw new ApiError(response.status, `http_${response.status}`,
                     typeof error === "string" ? error : `HTTP ${response.status}: ${text.slice(0, 200)}`);
}
