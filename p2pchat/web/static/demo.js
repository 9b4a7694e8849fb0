// The live space-time diagram of `p2pchat demo --web`.
//
// Every event of the run arrives once (with `lane`, the peer, and `t`, seconds into
// the run) and is kept. The view is rebuilt from the events up to a playhead:
// live, the playhead is "everything"; paused, it stands still; on replay it runs
// again from 0 at the run's own pace. Texts are set with textContent only.

import { openLink } from "./socket.js";

const SVG = "http://www.w3.org/2000/svg";
const LEFT = 80;
const WIDTH = 900;
const TOP = 30;
const LANE_GAP = 70;
const $ = (id) => document.getElementById(id);

const events = []; // everything received, in order
let view = emptyView();
let applied = 0; // events[0 .. applied) are in the view
let mode = "live"; // live | paused | replay
let replayStartedAt = 0;
let pausedAt = 0; // the playhead when paused
let selected = null;
let drawPending = false;

function emptyView() {
  return {
    lanes: [],
    messages: new Map(), // "sender:seq" -> {id, sender, seq, lamport, text, name, lane, t, concurrent, deps}
    arrivals: [], // {id, lane, t}
    order: [], // ids in the order lane 0 shows them
    stable: 0, // lane 0's stable count
    now: 0,
    finished: null,
  };
}

const idOf = (sender, seq) => `${sender}:${seq}`;

function laneOf(sender) {
  return view.lanes.findIndex((lane) => lane.peer_id === sender);
}

function apply(event) {
  if (typeof event.t === "number") view.now = Math.max(view.now, event.t);
  switch (event.event) {
    case "demo":
      view.lanes = event.lanes;
      break;
    case "message": {
      const id = idOf(event.sender, event.seq);
      const own = laneOf(event.sender) === event.lane;
      if (own || !view.messages.has(id)) {
        const known = view.messages.get(id);
        view.messages.set(id, {
          id,
          sender: event.sender,
          seq: event.seq,
          lamport: event.lamport,
          text: event.text,
          name: event.name,
          lane: laneOf(event.sender),
          t: own ? event.t : known ? known.t : event.t,
          concurrent: Boolean(event.concurrent) || Boolean(known && known.concurrent),
          deps: event.deps,
        });
      } else if (event.concurrent) {
        view.messages.get(id).concurrent = true;
      }
      if (!own) view.arrivals.push({ id, lane: event.lane, t: event.t });
      if (event.lane === 0) {
        view.order.splice(event.index, 0, id);
        if (event.stable) view.stable = Math.max(view.stable, event.index + 1);
      }
      break;
    }
    case "stable":
      if (event.lane === 0) view.stable = Math.max(view.stable, event.count);
      break;
    case "concurrent":
      for (const { sender, seq } of event.messages) {
        const message = view.messages.get(idOf(sender, seq));
        if (message) message.concurrent = true;
      }
      break;
    case "finished":
      view.finished = event;
      break;
    default:
      break;
  }
}

function playhead() {
  if (mode === "live") return Infinity;
  if (mode === "paused") return pausedAt;
  return (performance.now() - replayStartedAt) / 1000;
}

function advance() {
  const limit = playhead();
  while (applied < events.length) {
    const event = events[applied];
    if (typeof event.t === "number" && event.t > limit) break;
    apply(event);
    applied += 1;
  }
  if (mode === "replay") {
    if (applied >= events.length) setMode("live");
    else requestAnimationFrame(tick);
  }
  if (mode !== "live") view.now = Math.max(view.now, Math.min(limit, runLength()));
}

function tick() {
  advance();
  draw();
}

function runLength() {
  let end = 0;
  for (const event of events) if (typeof event.t === "number") end = Math.max(end, event.t);
  return end;
}

function scheduleDraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    advance();
    draw();
  });
}

// Causal past: (s, q) depends on (s, q-1) and on everything in its deps, transitively.
function causalPast(id) {
  const past = new Set();
  const stack = [id];
  while (stack.length) {
    const current = view.messages.get(stack.pop());
    if (!current) continue;
    const before = current.seq > 1 ? [idOf(current.sender, current.seq - 1)] : [];
    for (const [sender, seq] of Object.entries(current.deps || {})) before.push(idOf(sender, seq));
    for (const other of before) {
      if (!past.has(other)) {
        past.add(other);
        stack.push(other);
      }
    }
  }
  return past;
}

function element(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function draw() {
  const svg = $("diagram");
  const lanes = view.lanes;
  const height = TOP + LANE_GAP * Math.max(lanes.length - 1, 0) + 40;
  svg.setAttribute("viewBox", `0 0 ${LEFT + WIDTH + 20} ${height}`);
  const end = Math.max(mode === "live" ? view.now : runLength(), 0.5) * 1.05;
  const x = (t) => (LEFT + (WIDTH * t) / end).toFixed(1);
  const y = (lane) => TOP + LANE_GAP * lane;
  const past = selected ? causalPast(selected) : new Set();
  svg.classList.toggle("selecting", Boolean(selected));
  const defs = element("defs", {});
  const marker = element("marker", {
    id: "head", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto",
  });
  marker.append(element("path", { d: "M0,0 L10,5 L0,10 z", fill: "#888" }));
  defs.append(marker);
  const parts = [defs];
  lanes.forEach((lane, i) => {
    parts.push(element("line", { class: "lane", x1: LEFT, y1: y(i), x2: LEFT + WIDTH, y2: y(i) }));
    parts.push(element("text", { x: LEFT - 10, y: y(i) + 4, "text-anchor": "end" }, lane.name));
  });
  for (const arrival of view.arrivals) {
    const message = view.messages.get(arrival.id);
    const classes = ["arrow"];
    if (message.concurrent) classes.push("concurrent");
    if (arrival.id === selected || past.has(arrival.id)) classes.push("past");
    parts.push(element("line", {
      class: classes.join(" "), x1: x(message.t), y1: y(message.lane), x2: x(arrival.t), y2: y(arrival.lane),
      "marker-end": "url(#head)", "data-id": arrival.id,
    }));
  }
  for (const message of view.messages.values()) {
    const classes = ["dot"];
    if (message.concurrent) classes.push("concurrent");
    if (past.has(message.id)) classes.push("past");
    if (message.id === selected) classes.push("selected", "past");
    parts.push(element("circle", { class: classes.join(" "), cx: x(message.t), cy: y(message.lane), r: 5, "data-id": message.id }));
    parts.push(element("text", { class: "stamp", x: x(message.t), y: y(message.lane) - 9, "text-anchor": "middle" }, String(message.lamport)));
  }
  svg.replaceChildren(...parts);
  drawOrder(past);
  drawStatus();
}

function drawOrder(past) {
  const items = view.order.map((id, position) => {
    const message = view.messages.get(id);
    const item = document.createElement("li");
    const classes = [position < view.stable ? "stable" : "tentative"];
    if (message.concurrent) classes.push("concurrent");
    if (id === selected) classes.push("selected");
    if (past.has(id)) classes.push("past");
    item.className = classes.join(" ");
    item.dataset.id = id;
    const lane = view.lanes[message.lane];
    item.textContent = `L${message.lamport} ${lane ? lane.name : "?"}: ${message.text}${message.concurrent ? " ∥" : ""}`;
    return item;
  });
  $("order").replaceChildren(...items);
}

function drawStatus() {
  const total = view.lanes.length ? `${view.order.length} messages on ${view.lanes[0].name}` : "waiting for the run…";
  const state = { live: "live", paused: "paused", replay: "replaying" }[mode];
  $("clock").textContent = `${state} · t = ${view.now.toFixed(2)} s · ${total} · ${view.arrivals.length} deliveries`;
  $("pause").textContent = mode === "paused" ? "Resume" : "Pause";
  const verdict = $("verdict");
  if (view.finished) {
    verdict.className = view.finished.identical ? "ok" : "failed";
    verdict.textContent = view.finished.identical
      ? `Every peer holds the identical order of ${view.finished.messages} messages (digest ${view.finished.digest}).`
      : "The peers disagree!";
  } else {
    verdict.className = "";
    verdict.textContent = "";
  }
}

function setMode(next) {
  mode = next;
  $("diagram").dataset.mode = mode;
}

function select(id) {
  selected = id && id !== selected ? id : null;
  draw();
}

$("pause").addEventListener("click", () => {
  if (mode === "paused") {
    // Resume where the run was stopped, then catch up at the run's own pace.
    replayStartedAt = performance.now() - pausedAt * 1000;
    setMode("replay");
    requestAnimationFrame(tick);
  } else {
    pausedAt = playhead() === Infinity ? view.now : playhead();
    setMode("paused");
    draw();
  }
});

$("replay").addEventListener("click", () => {
  view = emptyView();
  applied = 0;
  replayStartedAt = performance.now();
  setMode("replay");
  requestAnimationFrame(tick);
});

$("diagram").addEventListener("click", (event) => {
  const id = event.target.dataset ? event.target.dataset.id : undefined;
  if (event.target.classList.contains("dot")) select(id);
  else select(null);
});
$("order").addEventListener("click", (event) => {
  const item = event.target.closest("li");
  if (item) select(item.dataset.id);
});

openLink({
  path: "/ws",
  onObjects(objects) {
    if (objects.length && objects[0].event === "demo" && events.length) {
      // The server restarted the stream (a reconnect): start over.
      events.length = 0;
      view = emptyView();
      applied = 0;
    }
    events.push(...objects);
    scheduleDraw();
  },
  onState(state) {
    const box = $("link");
    box.className = state;
    box.textContent = { connected: "connected", connecting: "connecting…", disconnected: "reconnecting…" }[state];
  },
});
setMode("live");
window.p2pchatDemo = { events, get view() { return view; } };
