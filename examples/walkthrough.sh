#!/usr/bin/env bash
# Run three peers in separate terminals (or here, in the background) and watch them agree.
#
# Terminal 1:  p2pchat chat --name alice --listen 127.0.0.1:9001
# Terminal 2:  p2pchat chat --name bob   --listen 127.0.0.1:9002 --join ws://127.0.0.1:9001/#<alice's id>
# Terminal 3:  p2pchat chat --name carol --join ws://127.0.0.1:9002/#<bob's id>
# (each chat prints its join URL, id included; a URL without the id trusts whoever answers)
#
# Type in any of them. Afterwards, each peer's stored log is the same:
#   p2pchat log --data ~/.local/share/p2pchat/alice
#
# This script does the same unattended, with --json, temporary data directories and
# ports the system picks (port 0), so it never collides with peers you run yourself.
set -euo pipefail
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

start() {  # name [join-url]: starts a peer and sets ${name}_url to its address
  local name=$1 join=${2:-}
  mkfifo "$work/$name.in"
  p2pchat chat --name "$name" --listen 127.0.0.1:0 --data "$work/$name" --json \
    ${join:+--join "$join"} <"$work/$name.in" >"$work/$name.out" &
  exec {fd}>"$work/$name.in"
  eval "${name}_fd=$fd"
  # The first line the peer prints is {"event":"ready","url":"ws://.../#<id>",...}.
  local url=""
  for _ in $(seq 100); do
    url=$(head -n 1 "$work/$name.out" | grep -o 'ws://[^"]*' || true)
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { echo "$name did not start" >&2; exit 1; }
  eval "${name}_url=$url"
}

start alice
start bob "$alice_url"
start carol "$bob_url"
sleep 2
echo "hello from alice" >&"$alice_fd"
echo "hello from carol" >&"$carol_fd"
echo "hi both, bob here" >&"$bob_fd"
# Wait (up to 15 s) until every peer has shown all three messages.
for _ in $(seq 150); do
  done_peers=0
  for name in alice bob carol; do
    [ "$(grep -c '"event":"message"' "$work/$name.out" || true)" -ge 3 ] && done_peers=$((done_peers + 1))
  done
  [ "$done_peers" -eq 3 ] && break
  sleep 0.1
done
kill -TERM $(jobs -p)
wait || true
for name in alice bob carol; do
  echo "--- $name"
  p2pchat log --data "$work/$name"
done
