// The chat page: draws the room (room.js) and sends what is typed.
//
// Only the rows on screen exist in the DOM (a fixed row height, a spacer as tall
// as the whole log), so a room of 100,000 messages scrolls as easily as one of
// ten. Texts and names are put in with textContent: never parsed as HTML.

import { applyObject, concurrentWith, createRoom, isStable, nameOf } from "./room.js";
import { openLink } from "./socket.js";

const OVERSCAN = 10;
const room = createRoom();
const $ = (id) => document.getElementById(id);
const logBox = $("log");
const rowsBox = $("rows");
const spacer = $("spacer");
let rowHeight = 24;
let dirty = true;
let stickToBottom = true;
let hoverIndex = -1;
let partners = new Set();

function receive(objects) {
  const now = performance.now();
  for (const obj of objects) applyObject(room, obj, now);
  scheduleDraw();
}

const link = openLink({
  path: "/ws",
  onObjects: receive,
  onState(state) {
    const box = $("link");
    box.className = state;
    box.textContent = { connected: "connected", connecting: "connecting…", disconnected: "reconnecting…" }[state];
  },
});

$("compose").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("text");
  const text = input.value.trim();
  if (text && link.send(text)) input.value = "";
});

logBox.addEventListener("scroll", () => {
  stickToBottom = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - rowHeight;
  scheduleDraw();
});
window.addEventListener("resize", scheduleDraw);

rowsBox.addEventListener("mouseover", (event) => {
  const element = event.target.closest(".row");
  const index = element ? Number(element.dataset.index) : -1;
  if (index === hoverIndex) return;
  hoverIndex = index;
  partners = new Set(index >= 0 ? concurrentWith(room, index) : []);
  scheduleDraw();
});

function scheduleDraw() {
  if (dirty) return;
  dirty = true;
  requestAnimationFrame(draw);
}

function localTime(iso) {
  const when = new Date(iso);
  return Number.isNaN(when.getTime()) ? "" : when.toLocaleTimeString([], { hour12: false });
}

function span(className, text) {
  const element = document.createElement("span");
  element.className = className;
  element.textContent = text;
  return element;
}

function drawRow(row, index, now) {
  const element = document.createElement("div");
  const classes = ["row", row.kind];
  classes.push(isStable(room, index) ? "stable" : "tentative");
  if (row.concurrent) classes.push("concurrent");
  if (row.lateUntil > now) classes.push("late");
  if (partners.has(row)) classes.push("hover-partner");
  element.className = classes.join(" ");
  element.dataset.index = String(index);
  element.dataset.sender = row.sender || "";
  element.dataset.seq = String(row.seq);
  element.style.transform = `translateY(${index * rowHeight}px)`;
  element.style.position = "absolute";
  element.style.left = "0";
  element.style.right = "0";
  if (row.kind === "member") {
    const text = row.notice || `${row.name || nameOf(room, row.peerId)} ${row.action}`;
    element.append(span("text", `— ${text}`));
  } else {
    element.append(span("time", localTime(row.sentAt)), span("name", row.name), span("text", row.text));
    if (row.concurrent) {
      const mark = span("mark", "∥");
      if (index === hoverIndex && partners.size) {
        const lines = [...partners].map((other) => `${other.name}: ${other.text}`);
        mark.title = `written concurrently with:\n${lines.join("\n")}`;
      }
      element.append(mark);
    }
    if (row.disputed) {
      const mark = span("mark disputed", "≠");
      mark.title = "its author was caught lying: other peers may show this line otherwise, or not at all";
      element.append(mark);
    }
    element.append(span("stamp", `L${row.lamport}`));
  }
  return element;
}

function draw() {
  dirty = false;
  const now = performance.now();
  const total = room.rows.length;
  spacer.style.height = `${total * rowHeight}px`;
  if (stickToBottom) logBox.scrollTop = logBox.scrollHeight;
  const first = Math.max(0, Math.floor(logBox.scrollTop / rowHeight) - OVERSCAN);
  const last = Math.min(total, Math.ceil((logBox.scrollTop + logBox.clientHeight) / rowHeight) + OVERSCAN);
  const fragment = document.createDocumentFragment();
  let lateShown = false;
  for (let i = first; i < last; i += 1) {
    const row = room.rows[i];
    fragment.append(drawRow(row, i, now));
    if (row.lateUntil > now) lateShown = true;
  }
  rowsBox.replaceChildren(fragment);
  drawHeader();
  drawMembers();
  // Take the highlight off late rows once their moment has passed.
  if (lateShown) setTimeout(scheduleDraw, 500);
}

function drawHeader() {
  if (!room.me) return;
  $("me").textContent = room.me.name;
  document.title = `p2pchat: ${room.me.name}`;
  const share = $("share-url");
  if (share.value !== room.me.url) share.value = room.me.url || "";
  const tentative = room.rows.length - Math.min(room.stableCount, room.rows.length);
  const status = room.status;
  const held = status && status.held ? ` (+${status.held} waiting)` : "";
  const peers = status ? ` · ${status.neighbours.length} connected` : "";
  $("counts").textContent = `${room.rows.length} messages${held} · ${tentative} tentative${peers}`;
  $("errors").textContent = room.errors.slice(-3).join("\n");
}

function drawMembers() {
  // Who holds stability back matters only while some line is still tentative.
  const waitingMatters = room.stableCount < room.rows.length;
  const list = $("members");
  const neighbours = new Set(room.status ? room.status.neighbours.map((n) => n.peer_id) : []);
  const items = [];
  const members = [...room.members.values()].sort((a, b) => nameOf(room, a.peer_id).localeCompare(nameOf(room, b.peer_id)));
  for (const who of members) {
    const item = document.createElement("li");
    item.dataset.peer = who.peer_id;
    const name = span(room.me && who.peer_id === room.me.peer_id ? "name me" : "name", nameOf(room, who.peer_id));
    item.append(name);
    const heard = who.lastSentAt ? `, last wrote ${localTime(who.lastSentAt)}` : "";
    const linked = neighbours.has(who.peer_id) ? ", connected here" : "";
    item.append(span("state", `${who.state}${linked}${heard}`));
    if (who.holding && waitingMatters) item.append(span("state holding", "· holding stability"));
    items.push(item);
  }
  list.replaceChildren(...items);
  const waiting = room.status && waitingMatters ? room.status.waiting_on.map((id) => nameOf(room, id)) : [];
  $("waiting").textContent = waiting.length ? `stability waits for ${waiting.join(", ")}` : "";
}

function measureRowHeight() {
  const value = getComputedStyle(document.documentElement).getPropertyValue("--row");
  rowHeight = parseInt(value, 10) || 24;
}

measureRowHeight();
dirty = false;
scheduleDraw();
// For tests and the latency benchmark: the room, and the path every received object takes.
window.p2pchat = { room, link, receive };
