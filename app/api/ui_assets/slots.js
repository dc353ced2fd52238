// slotserve /ui: one card per slot, built once and updated in place on every poll (so keyboard focus stays put), and
// each slot's request rate from its monotonic predictions_total. Names are always written as text, never as HTML.

const MIB = 1048576;
const RATE_WINDOW_MS = 5000; // request rates are averaged over the last 5 s of readings
const $ = (id) => document.getElementById(id);
const cards = new Map(); // slot index -> its card's elements
const rates = new Map(); // slot index -> recent readings of predictions_total

export function mib(bytes) {
  const value = bytes / MIB;
  if (value === 0) return "0";
  if (value < 0.01) return "<0.01";
  if (value < 0.1) return value.toFixed(2);
  return value < 100 ? value.toFixed(1) : value.toFixed(0);
}

export function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < MIB) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / MIB).toFixed(1)} MiB`;
}

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function rateOf(slot, now) {
  // requests per second from the slot's monotonic predictions_total, over the last few readings
  if (slot.predictions_total === null || slot.predictions_total === undefined) {
    rates.delete(slot.slot);
    return null;
  }
  let readings = rates.get(slot.slot) || [];
  const last = readings[readings.length - 1];
  if (last && (last.client !== slot.client || slot.predictions_total < last.total)) readings = [];
  readings.push({t: now, total: slot.predictions_total, client: slot.client});
  while (readings.length > 2 && readings[1].t <= now - RATE_WINDOW_MS) readings.shift();
  rates.set(slot.slot, readings);
  if (readings.length < 2) return null;
  const first = readings[0];
  return (slot.predictions_total - first.total) / ((now - first.t) / 1000);
}

function card(index, actions) {
  let parts = cards.get(index);
  if (parts) return parts;
  const root = el("article", "card");
  root.dataset.slot = String(index);
  const head = el("div", "head");
  const title = el("h3", "idx", `slot ${index}`);
  parts = {root, title, device: el("span", "device"), phase: el("span", "phase"), holder: el("p", "holder"),
           used: el("div", "used"), peak: el("div", "peak"), inUse: el("data", "in-use"), limit: el("span"),
           peakText: el("span"), residue: el("span"), rate: el("span", "rate"),
           unload: el("button", "unload", "Unload")};
  head.append(title, parts.device, parts.phase);
  const bar = el("div", "bar");
  bar.setAttribute("aria-hidden", "true"); // the figures below say the same in words
  bar.append(parts.used, parts.peak);
  const mem = el("p", "mem");
  mem.append(parts.inUse, " / ", parts.limit, " MiB · peak ", parts.peakText, " MiB");
  const meta = el("p", "meta");
  meta.append("residue ", parts.residue, " · ", parts.rate);
  parts.unload.type = "button";
  parts.unload.addEventListener("click", () => actions.unload(parts.unload.dataset.client, parts.unload));
  root.append(head, parts.holder, bar, mem, meta, parts.unload);
  cards.set(index, parts);
  return parts;
}

export function renderSlots(slots, actions) {
  const now = Date.now();
  const container = $("slots");
  const clients = new Set();
  slots.forEach((slot, position) => {
    const parts = card(slot.slot, actions);
    const free = slot.state === "empty";
    parts.root.dataset.state = slot.state;
    parts.root.classList.toggle("free", free);
    parts.device.textContent = slot.device;
    parts.device.title = `a ${slot.kind.toUpperCase()} slot`;
    parts.phase.textContent = free ? "free" : slot.state;
    if (free) parts.holder.textContent = "free: no client";
    else if (slot.client) parts.holder.replaceChildren(el("strong", "client", slot.client), " · ",
                                                       el("span", "model", slot.model || "(none)"));
    else parts.holder.textContent = "held by another client";
    if (slot.client) clients.add(slot.client);
    const {limit_bytes: limit, in_use_bytes: inUse, peak_bytes: peak} = slot.memory;
    const fraction = limit ? Math.min(inUse / limit, 1) : 0;
    parts.used.style.width = `${(fraction * 100).toFixed(2)}%`;
    parts.used.classList.toggle("full", fraction >= 0.9);
    parts.peak.style.left = `${(Math.min(peak / limit, 1) * 100).toFixed(2)}%`;
    parts.peak.hidden = !peak;
    parts.inUse.value = String(inUse);
    parts.inUse.dataset.memoryInUse = String(inUse);
    parts.inUse.textContent = mib(inUse);
    parts.limit.textContent = mib(limit);
    parts.peakText.textContent = mib(peak);
    parts.residue.textContent = size(slot.residue_bytes);
    parts.residue.classList.toggle("warn", slot.residue_bytes > 0);
    const rate = rateOf(slot, now);
    parts.rate.textContent = rate === null ? (slot.predictions_total === null ? "activity hidden" : "… req/s")
      : `${rate < 10 ? rate.toFixed(1) : rate.toFixed(0)} req/s`;
    parts.rate.title = slot.predictions_total === null ? "" : `${slot.predictions_total} requests answered`;
    parts.unload.hidden = !(actions.mayActFor(slot.client) && !free && slot.state !== "unloading");
    if (!parts.unload.disabled) { // while an unload runs, the button keeps the client it was pressed for
      parts.unload.dataset.client = slot.client || "";
      parts.unload.setAttribute("aria-label", `Unload ${slot.model} from ${slot.client}`);
    }
    const here = container.children[position];
    if (here !== parts.root) container.insertBefore(parts.root, here || null);
  });
  const used = slots.filter((s) => s.state !== "empty").length;
  $("slots-summary").textContent = `${used} of ${slots.length} in use`;
  $("clients").replaceChildren(...[...clients].sort().map((c) => Object.assign(el("option"), {value: c})));
}
