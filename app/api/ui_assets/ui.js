// slotserve /ui: every slot, live. Reads the same JSON API as any client (v1/whoami, v1/slots, v1/models), polling
// about once a second, and acts through it too (PUT and DELETE v1/clients/{client}/model). Plain ES modules: no
// framework, no build step.
import {ApiError, KEY_ITEM, api} from "./api.js";
import {el, renderSlots, size} from "./slots.js";

const POLL_MS = 1000;
const MODELS_MS = 10000; // the store changes rarely: list it every 10 s, and after every action
const $ = (id) => document.getElementById(id);
const state = {identity: null, modelsAt: 0, timer: 0, polling: false, again: false};

function mayActFor(client) {
  const id = state.identity;
  return Boolean(id && client && (id.admin || id.client === client));
}

function setConn(kind, text) {
  const conn = $("conn");
  conn.dataset.conn = kind;
  conn.textContent = text;
  document.body.classList.toggle("stale", kind !== "live");
}

async function identify() {
  const id = await api("GET", "v1/whoami");
  state.identity = id;
  const who = $("who");
  const client = $("client");
  if (id.admin) {
    who.textContent = id.client ? `admin key (${id.client}): acts for any client`
      : "open mode (no keys): acts for any client";
    client.readOnly = false;
  } else {
    who.textContent = `tenant key: client ${id.client}`;
    client.value = id.client;
    client.readOnly = true;
  }
  $("forget-key").hidden = !sessionStorage.getItem(KEY_ITEM);
  $("key-form").hidden = true;
  $("act").hidden = false;
}

function askForKey(why) {
  state.identity = null;
  $("act").hidden = true;
  $("key-why").textContent = why;
  $("key-form").hidden = false;
  $("forget-key").hidden = !sessionStorage.getItem(KEY_ITEM);
  setConn("auth", "API key needed");
  $("key").focus();
}

// ---- polling ---------------------------------------------------------------------------------------------------

async function tick() {
  // one poll at a time: a tick asked for while one runs (after an action) runs right after it
  if (state.polling) {
    state.again = true;
    return;
  }
  state.polling = true;
  clearTimeout(state.timer);
  let goOn = true;
  try {
    goOn = await poll();
  } catch (err) {
    setConn("error", `unexpected answer: ${err.message}`); // a proxy's page, a bug: say so, and keep polling
  } finally {
    state.polling = false;
  }
  if (!goOn) return; // polling resumes once a key is given
  if (state.again) {
    state.again = false;
    tick();
  } else {
    state.timer = setTimeout(tick, POLL_MS);
  }
}

async function poll() {
  try {
    if (!state.identity) await identify();
    const listed = await api("GET", "v1/slots");
    renderSlots(listed.slots, {mayActFor, unload});
    if (Date.now() - state.modelsAt > MODELS_MS) await refreshModels();
    setConn("live", "live");
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    if (err.status === 401) {
      askForKey(err.message);
      return false;
    }
    if (err.status === 0) {
      state.identity = null; // the server may come back as another one: ask who we are again
      setConn("disconnected", "disconnected: retrying every second");
    } else {
      setConn("error", `server says: ${err.message}`);
    }
  }
  return true;
}

async function refreshModels() {
  const listed = await api("GET", "v1/models");
  state.modelsAt = Date.now();
  const body = $("models").tBodies[0];
  body.replaceChildren(...listed.models.map((m) => {
    const row = el("tr");
    row.append(el("td", "", m.name), el("td", "", m.format), el("td", "num", size(m.size_bytes)));
    return row;
  }));
  const select = $("model");
  const chosen = select.value;
  select.replaceChildren(...listed.models.map((m) => {
    const option = el("option", "", `${m.name} (${m.format}, ${size(m.size_bytes)})`);
    option.value = m.name;
    return option;
  }));
  if (listed.models.some((m) => m.name === chosen)) select.value = chosen;
}
function report(text) {
  $("status").textContent = text;
  $("error").hidden = true;
}

function fail(what, err) {
  const still = err.details && "serving" in err.details
    ? ` It still serves ${err.details.serving === null ? "no model" : err.details.serving}.` : "";
  $("error").textContent = `${what}: ${err.message}${still} (${err.code})`;
  $("error").hidden = false;
  $("status").textContent = "";
}

async function load(event) {
  event.preventDefault();
  const client = $("client").value.trim();
  const model = $("model").value;
  if (!client || !model) return;
  const button = $("load");
  const progress = $("progress");
  button.disabled = true;
  progress.hidden = false;
  const started = Date.now();
  const say = () => report(`Loading ${model} for ${client}… ${((Date.now() - started) / 1000).toFixed(0)} s`);
  say();
  const ticking = setInterval(say, 1000);
  try {
    const done = await api("PUT", `v1/clients/${encodeURIComponent(client)}/model`, {model});
    const took = `${done.load_ms.toFixed(0)} ms`;
    report(done.previous_model
      ? `${client}: swapped ${done.previous_model} → ${done.model} in slot ${done.slot} `
        + `(${done.strategy}, ${took}, freed ${size(done.freed_bytes)})`
      : `${client}: loaded ${done.model} into slot ${done.slot} (${took})`);
  } catch (err) {
    fail(`Could not load ${model} for ${client}`, err);
  } finally {
    clearInterval(ticking);
    button.disabled = false;
    progress.hidden = true;
    state.modelsAt = 0;
    tick();
  }
}

async function unload(client, button) {
  if (!client) return;
  button.disabled = true;
  button.textContent = "Unloading…";
  report(`Unloading ${client}'s model…`);
  try {
    const done = await api("DELETE", `v1/clients/${encodeURIComponent(client)}/model`);
    report(`${client}: unloaded ${done.model} from slot ${done.slot}, freed ${size(done.freed_bytes)}`);
  } catch (err) {
    fail(`Could not unload ${client}'s model`, err);
  } finally {
    button.disabled = false;
    button.textContent = "Unload";
    tick();
  }
}

function start() {
  $("act").addEventListener("submit", load);
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key").value.trim();
    if (!/^[\x21-\x7e]+$/.test(key)) { // a header carries printable ASCII only (a pasted invisible character?)
      askForKey("That key has characters an API key never has (spaces or non-ASCII); paste it again.");
      return;
    }
    sessionStorage.setItem(KEY_ITEM, key);
    $("key").value = "";
    state.identity = null;
    setConn("connecting", "connecting…");
    tick();
  });
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_ITEM);
    state.identity = null;
    tick();
  });
  tick();
}

start();
