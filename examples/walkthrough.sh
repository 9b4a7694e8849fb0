#!/usr/bin/env bash
# Run three peers in separate terminals (or here, in the background) and watch them agree.
#
# Terminal 1:  p2pchat chat --name alice --listen 127.0.0.1:9001
# Terminal 2:  p2pchat chat --name bob   --listen 127.0.0.1:9002 --join ws://127.0.0.1:9001
# Terminal 3:  p2pchat chat --name carol --join ws://127.0.0.1:9002
#
# Type in any of them. Afterwards, each peer's stored log is the same:
#   p2pchat log --data ~/.local/share/p2pchat/alice
#
# This script does the same unattended, with --json and temporary data directories.
set -euo pipefail
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

start() {  # name port [join-url]
  local name=$1 port=$2 join=${3:-}
  mkfifo "$work/$name.in"
  p2pchat chat --name "$name" --listen "127.0.0.1:$port" --data "$work/$name" --json \
    ${join:+--join "$join"} <"$work/$name.in" >"$work/$name.out" &
  exec {fd}>"$work/$name.in"
  eval "${name}_fd=$fd"
}

start alice 9001
start bob 9002 ws://127.0.0.1:9001
start carol 9003 ws://127.0.0.1:9002
sleep 2
echo "hello from alice" >&"$alice_fd"
echo "hello from carol" >&"$carol_fd"
echo "hi both, bob here" >&"$bob_fd"
sleep 3
kill -TERM $(jobs -p)
wait || true
for name in alice bob carol; do
  echo "--- $name"
  p2pchat log --data "$work/$name"
done
