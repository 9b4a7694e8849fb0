// The room as the page knows it: the ordered log, stability, concurrency, members.
//
// Pure state, no DOM: `applyObject(room, obj, now)` folds one JSON object of the
// `chat --json` contract into the room. The view (chat.js) draws from it.

export const LATE_HIGHLIGHT_MS = 2500;

export function createRoom() {
  return {
    me: null, // the ready object
    rows: [], // log entries in the shared order (messages and membership lines)
    byId: new Map(), // "sender:seq" -> row
    stableCount: 0,
    members: new Map(), // peer_id -> {peer_id, name, state, by, lastSentAt, holding}
    status: null,
    errors: [],
    liars: new Set(), // peer_ids proven to have lied: other peers may show their lines otherwise
    version: 0, // bumped on every change, so the view knows to redraw
  };
}

export function rowId(sender, seq) {
  return `${sender}:${seq}`;
}

export function isStable(room, index) {
  return index < room.stableCount;
}

function reset(room) {
  room.rows = [];
  room.byId = new Map();
  room.stableCount = 0;
  room.members = new Map();
  room.liars = new Set();
}

function insertRow(room, row, index, now, replayed) {
  const at = Number.isInteger(index) && index >= 0 && index <= room.rows.length ? index : room.rows.length;
  // Inserted above lines already on screen: a late arrival, highlighted for a moment.
  row.lateUntil = !replayed && at < room.rows.length ? now + LATE_HIGHLIGHT_MS : 0;
  room.rows.splice(at, 0, row);
  if (row.sender !== undefined && row.seq !== undefined) room.byId.set(rowId(row.sender, row.seq), row);
}

function noteStable(room, index, stable) {
  if (stable && index + 1 > room.stableCount) room.stableCount = index + 1;
}

function member(room, peerId) {
  let entry = room.members.get(peerId);
  if (!entry) {
    entry = { peer_id: peerId, name: null, state: "active", by: null, lastSentAt: null, holding: false };
    room.members.set(peerId, entry);
  }
  return entry;
}

function decided(room, joined, removed, by) {
  for (const j of joined || []) {
    const who = member(room, j.peer_id);
    who.state = "active";
    if (j.name) who.name = j.name;
    who.by = by || null;
  }
  for (const r of removed || []) member(room, r.peer_id).state = "removed";
}

function disputed(room, obj, offence) {
  for (const row of room.rows) {
    if (row.kind === "message" && row.sender === obj.sender) row.disputed = true;
  }
  if (!room.liars.has(obj.sender)) {
    room.liars.add(obj.sender);
    room.errors.push(`${obj.name} ${offence}: its lines marked ≠ may read otherwise, or be missing, on other peers`);
  }
}

const APPLY = {
  ready(room, obj) {
    reset(room);
    room.me = obj;
  },
  message(room, obj, now) {
    const row = {
      kind: "message",
      sender: obj.sender,
      name: obj.name,
      seq: obj.seq,
      lamport: obj.lamport,
      text: obj.text,
      sentAt: obj.sent_at,
      concurrent: Boolean(obj.concurrent),
      disputed: Boolean(obj.disputed),
      deps: obj.deps || null,
    };
    if (room.liars.has(obj.sender)) row.disputed = true;
    insertRow(room, row, obj.index, now, Boolean(obj.replayed));
    noteStable(room, obj.index, obj.stable);
    const who = member(room, obj.sender);
    who.name = obj.name;
    if (!who.lastSentAt || obj.sent_at > who.lastSentAt) who.lastSentAt = obj.sent_at;
  },
  member(room, obj, now) {
    // A membership entry of the log: a line in the conversation (its notice, as the
    // terminal shows it) and members' new states.
    const row = {
      kind: "member",
      sender: obj.sender,
      seq: obj.seq,
      lamport: obj.lamport,
      name: obj.name,
      peerId: obj.peer_id,
      action: obj.action,
      notice: obj.notice || "",
      by: obj.by,
      concurrent: false,
      deps: null,
    };
    insertRow(room, row, obj.index, now, Boolean(obj.replayed));
    noteStable(room, obj.index, obj.stable);
    const who = member(room, obj.peer_id);
    if (obj.name) who.name = obj.name;
    if (obj.action === "joined") who.state = "active"; // the founder's genesis
    else if (obj.action === "left" || obj.action === "away") who.state = obj.action;
    if (obj.decided) decided(room, obj.decided.joined, obj.decided.removed, obj.by);
  },
  members(room, obj) {
    // A membership change was decided: who joined (or came back), who was removed.
    decided(room, obj.joined, obj.removed, obj.by);
  },
  voided(room, obj) {
    // Entries a removal voided leave the log (they were never stable).
    const gone = new Set(obj.messages.map((m) => rowId(m.sender, m.seq)));
    room.rows = room.rows.filter((row) => !gone.has(rowId(row.sender, row.seq)));
    for (const id of gone) room.byId.delete(id);
  },
  stable(room, obj) {
    if (obj.count > room.stableCount) room.stableCount = obj.count;
  },
  // Proof that a member lied: its lines may read otherwise, or be missing, on other
  // peers (see docs/equivocation.md). The room removes it.
  equivocation(room, obj) {
    disputed(room, obj, `signed two versions of its entry ${obj.seq}`);
  },
  clock_lie(room, obj) {
    disputed(room, obj, `announced clock ${obj.announced_clock} after its entry ${obj.announced_seq}, then stamped its entry ${obj.seq} ${obj.lamport}`);
  },
  concurrent(room, obj) {
    for (const { sender, seq } of obj.messages) {
      const row = room.byId.get(rowId(sender, seq));
      if (row) row.concurrent = true;
    }
  },
  status(room, obj) {
    room.status = obj;
    for (const m of obj.members) {
      const who = member(room, m.peer_id);
      if (m.name) who.name = m.name;
      if (m.last_sent_at && (!who.lastSentAt || m.last_sent_at > who.lastSentAt)) who.lastSentAt = m.last_sent_at;
      who.holding = Boolean(m.holding_stability);
    }
  },
  error(room, obj) {
    room.errors.push(obj.reason);
  },
  // The answers to commands typed on the page (/invite, /remove), shown where errors are.
  invite(room, obj) {
    room.errors.push(`invite (one newcomer, 24 h): ${obj.url}`);
  },
  notice(room, obj) {
    room.errors.push(obj.text);
  },
};

export function applyObject(room, obj, now) {
  const apply = APPLY[obj.event];
  if (!apply) return false; // peer_up, peer_down, statistics, future events: nothing to draw
  apply(room, obj, now);
  room.version += 1;
  return true;
}

export function nameOf(room, peerId) {
  const who = room.members.get(peerId);
  return (who && who.name) || (peerId ? peerId.slice(0, 8) : "?");
}

// Causality, from the `deps` of each message (what its author had newly seen):
// the direct predecessors of (s, q) are (s, q-1) and every dependency.
function predecessors(room, row) {
  const out = [];
  if (row.seq > 1) out.push(rowId(row.sender, row.seq - 1));
  if (row.deps) for (const [sender, seq] of Object.entries(row.deps)) out.push(rowId(sender, seq));
  return out;
}

// Whether `target` is in the causal past of `row`. Entries stamped at or below the
// target's stamp cannot have it in their past, so the search stops there.
export function happenedBefore(room, target, row) {
  const goal = rowId(target.sender, target.seq);
  const seen = new Set();
  const stack = predecessors(room, row);
  while (stack.length) {
    const id = stack.pop();
    if (id === goal) return true;
    if (seen.has(id)) continue;
    seen.add(id);
    const next = room.byId.get(id);
    if (next && next.lamport > target.lamport) stack.push(...predecessors(room, next));
  }
  return false;
}

// The lines a concurrent line was concurrent with: concurrent lines near it in the
// order (concurrent entries sort close together) of which neither saw the other.
export function concurrentWith(room, index, window = 200) {
  const row = room.rows[index];
  const found = [];
  if (!row || !row.concurrent || !row.deps) return found;
  const first = Math.max(0, index - window);
  const last = Math.min(room.rows.length - 1, index + window);
  for (let i = first; i <= last; i += 1) {
    const other = room.rows[i];
    if (i === index || !other.concurrent || other.kind !== "message") continue;
    if (!happenedBefore(room, other, row) && !happenedBefore(room, row, other)) found.push(other);
  }
  return found;
}
