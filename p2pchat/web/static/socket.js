// The page's link to its peer: a WebSocket that reconnects by itself.
//
// Frames from the peer carry the JSON objects of `p2pchat chat --json`, one per
// line; `onObjects` gets them parsed, in order. After every (re)connect the peer
// starts again with `ready` and a replay of its log, so a page never has to
// guess what it missed.

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 4000;

export function tokenFromLocation(location) {
  return new URLSearchParams(location.search).get("token") || "";
}

export function openLink({ path, onObjects, onState }) {
  const token = tokenFromLocation(window.location);
  const url = `ws://${window.location.host}${path}?token=${encodeURIComponent(token)}`;
  let socket = null;
  let retry = RETRY_MIN_MS;
  let stopped = false;

  function connect() {
    onState("connecting");
    socket = new WebSocket(url);
    socket.addEventListener("open", () => {
      retry = RETRY_MIN_MS;
      onState("connected");
    });
    socket.addEventListener("message", (event) => {
      const objects = [];
      for (const line of String(event.data).split("\n")) {
        if (line) objects.push(JSON.parse(line));
      }
      onObjects(objects);
    });
    socket.addEventListener("close", () => {
      socket = null;
      if (stopped) return;
      onState("disconnected");
      setTimeout(connect, retry);
      retry = Math.min(RETRY_MAX_MS, retry * 2);
    });
  }

  connect();
  return {
    send(text) {
      if (socket && socket.readyState === WebSocket.OPEN) {
        socket.send(text);
        return true;
      }
      return false;
    },
    close() {
      stopped = true;
      if (socket) socket.close();
    },
  };
}
