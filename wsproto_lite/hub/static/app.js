// The hub's chat demo: the browser's own WebSocket API, no build step.
// Protocol: PROTOCOL.md (Centrifugo's client protocol v2, JSON: centrifuge-js works too, this page shows the
// wire format by hand). One connection; one room at a time; reconnect with backoff + jitter,
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
  present: new Map(), // client id -> ClientInfo {user, client, conn_info}
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
    state.pending.get(id).method = method;
    state.ws.send(JSON.stringify({ id, [method]: params || {} }));
  });
}

function showPublication(pub, missed) {
  if (pub.offset !== undefined) {
    if (pub.offset <= state.offset) return; // already shown (a recovered copy of a live one)
    state.offset = pub.offset;
  }
  const d = pub.data || {};
  const who = typeof d.name === "string" ? d.name : displayName(pub.info) || "anonymous";
  const text = typeof d.text === "string" ? d.text : JSON.stringify(d);
  logLine(missed ? "missed" : "", who + ":", text, missed ? "(missed while away)" : "");
}

function displayName(info) {
  if (!info) return "";
  const c = info.conn_info;
  return (c && typeof c.name === "string" && c.name) || info.user || "";
}

function renderPresence() {
  const ul = $("presence");
  ul.replaceChildren();
  for (const [client, info] of state.present) {
    const li = document.createElement("li");
    li.textContent = (displayName(info) || "anonymous") + (client === state.client ? " (you)" : "");
    ul.append(li);
  }
  $("count").textContent = String(state.present.size);
}

function onPush(p) {
  if (p.channel !== state.room) return;
  if (p.pub) showPublication(p.pub, false);
  else if (p.join) { state.present.set(p.join.info.client, p.join.info); renderPresence(); }
  else if (p.leave) { state.present.delete(p.leave.info.client); renderPresence(); }
  else if (p.unsubscribe) logLine("notice", "", "unsubscribed from " + p.channel + ": " + p.unsubscribe.reason);
}

async function subscribe() {
  const p = { channel: state.room, recoverable: true, positioned: true, join_leave: true };
  if (state.epoch) Object.assign(p, { recover: true, epoch: state.epoch, offset: state.offset });
  const r = await call("subscribe", p);
  if (p.recover) {
    if (r.recovered) {
      const pubs = r.publications || [];
      pubs.forEach((pub) => showPublication(pub, true));
      logLine("system", "", `reconnected: recovered ${pubs.length} missed message(s)`);
    } else {
      logLine("notice", "", "reconnected, but the hub lost the room's history (restart or too long away): " +
        "messages may be missing; showing what it holds");
      if (r.epoch !== state.epoch) state.offset = 0;
      state.epoch = r.epoch;
      const h = await call("history", { channel: state.room, limit: 50, reverse: true });
      (h.publications || []).reverse().forEach((pub) => showPublication(pub, true));
    }
  } else {
    state.offset = r.offset || 0;
  }
  state.epoch = r.epoch || "";
  try {
    const pr = await call("presence", { channel: state.room });
    state.present = new Map(Object.entries(pr.presence || {}));
    renderPresence();
  } catch (err) { /* 108: presence is off in this namespace */ }
}

function connect() {
  setStatus(state.attempt ? "reconnecting" : "connecting", "reconnecting");
  // relative to this page: the hub may be mounted below a path (app.mount("/hub", ...): /hub/connection/websocket)
  const url = new URL("connection/websocket", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(url);
  state.ws = ws;
  ws.onopen = async () => {
    try {
      const r = await call("connect", { name: "wsproto-lite-chat", data: { name: state.name } });
      state.client = r.client;
      state.pong = !!r.pong;
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
    for (const line of String(e.data).split("\n")) {
      if (!line) continue;
      const m = JSON.parse(line);
      if (m.id) {
        const p = state.pending.get(m.id);
        if (!p) continue;
        state.pending.delete(m.id);
        if (m.error) p.reject(new Error(`${m.error.message} (${m.error.code})`)); else p.resolve(m[p.method] || {});
      } else if (m.push) onPush(m.push);
      else if (state.pong) ws.send("{}"); // the hub's ping: answer, or it closes with 3012
    }
  };
  ws.onclose = (e) => {
    if (state.ws !== ws) return;
    state.connected = false;
    for (const p of state.pending.values()) p.reject(new Error("connection closed"));
    state.pending.clear();
    state.present.clear();
    renderPresence();
    // Centrifugo's rule: 3500-3999 and 4500-4999 are terminal, anything else reconnects
    if ((e.code >= 3500 && e.code < 4000) || (e.code >= 4500 && e.code < 5000)) {
      setStatus(`closed (${e.code}): ${e.reason}`);
      logLine("system", "", `disconnected by the hub (${e.reason || e.code})`);
      return;
    }
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

connect();
