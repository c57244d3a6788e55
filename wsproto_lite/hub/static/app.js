// The hub's chat demo: the browser's own WebSocket API, no build step.
// Protocol: server/hub/PROTOCOL.md. One connection; one room at a time; reconnect with backoff + jitter,
// recovering from the last offset seen; when recovery is impossible, say so and show the latest history.
"use strict";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const BACKOFF_MIN = Number(params.get("backoff") || 500); // ms (the browser test sets it)
const BACKOFF_MAX = 20000;

const state = {
  ws: null, nextId: 1, pending: new Map(), attempt: 0, connected: false,
  client: "", room: params.get("room") || "chat:lobby",
  name: params.get("name") || "guest-" + Math.floor(Math.random() * 1000),
  epoch: "", offset: 0, // the last position seen in the room: where recovery starts
  present: new Map(), // client id -> {user, name}
};
$("room").value = state.room;
$("name").value = state.name;

function setStatus(text, cls) { $("status").textContent = text; $("status").className = cls || ""; }

function logLine(cls, who, text, meta) {
  const li = document.createElement("li");
  li.className = cls;
  if (who) { const b = document.createElement("span"); b.className = "who"; b.textContent = who; li.append(b); }
  li.append(document.createTextNode(text));
  if (meta) { const m = document.createElement("span"); m.className = "meta"; m.textContent = meta; li.append(m); }
  $("log").append(li);
  li.scrollIntoView({ block: "end" });
}

function call(method, params) {
  return new Promise((resolve, reject) => {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) { reject(new Error("not connected")); return; }
    const id = state.nextId++;
    state.pending.set(id, { resolve, reject });
    state.ws.send(JSON.stringify(params ? { id, method, params } : { id, method }));
  });
}

function showPublication(pub, missed) {
  if (pub.offset !== undefined) {
    if (pub.offset <= state.offset) return; // already shown (a recovered copy of a live one)
    state.offset = pub.offset;
  }
  const d = pub.data || {};
  const who = typeof d.name === "string" ? d.name : (pub.info && pub.info.user) || "anonymous";
  const text = typeof d.text === "string" ? d.text : JSON.stringify(d);
  logLine(missed ? "missed" : "", who + ":", text, missed ? "(missed while away)" : "");
}

function renderPresence() {
  const ul = $("presence");
  ul.replaceChildren();
  for (const [client, info] of state.present) {
    const li = document.createElement("li");
    li.textContent = (info.name || info.user || "anonymous") + (client === state.client ? " (you)" : "");
    ul.append(li);
  }
  $("count").textContent = String(state.present.size);
}

function onPush(m) {
  if (m.push === "pub" && m.channel === state.room) showPublication(m, false);
  else if (m.push === "join" && m.channel === state.room) { state.present.set(m.info.client, m.info); renderPresence(); }
  else if (m.push === "leave" && m.channel === state.room) { state.present.delete(m.info.client); renderPresence(); }
  else if (m.push === "disconnect") {
    state.reconnect = m.reconnect;
    logLine("system", "", `disconnected by the hub (${m.reason})` + (m.reconnect ? "; reconnecting" : ""));
  }
  else if (m.push === "unsubscribe") logLine("notice", "", "unsubscribed from " + m.channel + ": " + m.reason);
}

async function subscribe() {
  const p = { channel: state.room };
  if (state.epoch) p.recover = { epoch: state.epoch, offset: state.offset };
  const r = await call("subscribe", p);
  if (p.recover) {
    if (r.recovered) {
      r.publications.forEach((pub) => showPublication(pub, true));
      logLine("system", "", `reconnected: recovered ${r.publications.length} missed message(s)`);
    } else {
      logLine("notice", "", "reconnected, but the hub lost the room's history (restart or too long away): " +
        "messages may be missing; showing what it holds");
      if (r.epoch !== state.epoch) state.offset = 0;
      state.epoch = r.epoch;
      const h = await call("history", { channel: state.room, limit: 50 });
      h.publications.forEach((pub) => showPublication(pub, true));
    }
  } else {
    state.offset = r.offset;
  }
  state.epoch = r.epoch;
  if (r.presence) {
    const pr = await call("presence", { channel: state.room });
    state.present = new Map(Object.entries(pr.clients).map(([c, i]) => [c, { client: c, ...i }]));
    renderPresence();
  }
}

function connect() {
  setStatus(state.attempt ? "reconnecting" : "connecting", "reconnecting");
  // relative to this page: the hub may be mounted below a path (app.mount("/hub", ...): /hub/connection/websocket)
  const url = new URL("connection/websocket", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(url);
  state.ws = ws;
  state.reconnect = true;
  ws.onopen = async () => {
    try {
      const r = await call("connect", { name: state.name });
      state.client = r.client;
      await subscribe();
      state.attempt = 0;
      state.connected = true;
      setStatus(`connected as ${state.name} in ${state.room}`, "connected");
    } catch (err) {
      logLine("notice", "", "error: " + err.message);
      ws.close();
    }
  };
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.id !== undefined) {
      const p = state.pending.get(m.id);
      if (!p) return;
      state.pending.delete(m.id);
      if (m.error) p.reject(new Error(`${m.error.message} (${m.error.code})`)); else p.resolve(m.result);
    } else onPush(m);
  };
  ws.onclose = (e) => {
    if (state.ws !== ws) return;
    state.connected = false;
    for (const p of state.pending.values()) p.reject(new Error("connection closed"));
    state.pending.clear();
    state.present.clear();
    renderPresence();
    if (!state.reconnect || (e.code >= 4500 && e.code <= 4999)) { setStatus(`closed (${e.code}): ${e.reason}`); return; }
    const delay = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** state.attempt) * (1 + Math.random());
    state.attempt += 1;
    setStatus(`reconnecting in ${(delay / 1000).toFixed(1)} s`, "reconnecting");
    setTimeout(connect, delay);
  };
}

$("send").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  try {
    await call("publish", { channel: state.room, data: { name: state.name, text } });
    $("text").value = "";
  } catch (err) { logLine("notice", "", "not sent: " + err.message); }
});

$("join").addEventListener("click", async () => {
  const room = $("room").value.trim();
  state.name = $("name").value.trim() || state.name;
  if (!room) return;
  try { if (state.connected) await call("unsubscribe", { channel: state.room }); } catch (err) { /* not subscribed */ }
  state.room = room; state.epoch = ""; state.offset = 0;
  $("log").replaceChildren();
  const url = new URL(location.href);
  url.searchParams.set("room", room); url.searchParams.set("name", state.name);
  history.replaceState(null, "", url);
  if (state.connected) {
    try { await subscribe(); setStatus(`connected as ${state.name} in ${state.room}`, "connected"); }
    catch (err) { logLine("notice", "", "cannot join: " + err.message); }
  }
});

setInterval(() => { if (state.connected) call("ping").catch(() => {}); }, 25000);
connect();
