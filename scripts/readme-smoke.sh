#!/usr/bin/env bash
# Runs the README's quick start exactly as written: starts the gateway with the README's run command, then runs
# every "$ curl --unix-socket ..." line of the ```console blocks of the README and of docs/*.md (the pages it links
# to) and compares its output with the lines under it.
set -euo pipefail
cd "$(dirname "$0")/.."
readme=README.md
socket=/tmp/gateway/gateway.sock
run_cmd=$(grep -m1 -E '^dotnet run --project src/Gateway$' "$readme") || { echo "README has no 'dotnet run --project src/Gateway' line"; exit 1; }

log=$(mktemp)
# shellcheck disable=SC2086
setsid $run_cmd >"$log" 2>&1 &
pid=$!
cleanup() { kill -TERM -- -"$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"; }
trap cleanup EXIT

for _ in $(seq 1 240); do
  if curl -sf --unix-socket "$socket" http://localhost/healthz >/dev/null 2>&1; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then echo "gateway exited:"; cat "$log"; exit 1; fi
  sleep 0.5
done
curl -sf --unix-socket "$socket" http://localhost/healthz >/dev/null || { echo "gateway did not become healthy:"; cat "$log"; exit 1; }

# Extract (command, expected output) pairs from ```console blocks.
python3 - "$readme" docs/*.md >"$log.cases" <<'PY'
import sys, json
lines = [l for f in sys.argv[1:] for l in open(f, encoding="utf-8").read().splitlines() + ["```"]]
cases, inblock, cur = [], False, None
for line in lines:
    if line.strip() == "```console":
        inblock = True; cur = None; continue
    if inblock and line.strip() == "```":
        inblock = False
        if cur: cases.append(cur); cur = None
        continue
    if not inblock: continue
    if line.startswith("$ "):
        if cur: cases.append(cur)
        cur = {"cmd": line[2:], "out": []} if "--unix-socket" in line else None
    elif cur is not None:
        cur["out"].append(line)
for c in cases:
    print(json.dumps(c))
PY

n=0; bad=0
while IFS= read -r case; do
  cmd=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["cmd"])' "$case")
  expected=$(python3 -c 'import json,sys; print("\n".join(json.loads(sys.argv[1])["out"]))' "$case")
  # stdout only, as a reader sees it: curl writes its progress meter to stderr when stdout is not a terminal.
  actual=$(bash -c "$cmd" 2>"$log.err" || true)
  n=$((n + 1))
  if [ "$actual" == "$expected" ]; then
    echo "ok   $cmd"
  else
    echo "FAIL $cmd"; echo "  expected: $expected"; echo "  actual:   $actual"; echo "  stderr:   $(cat "$log.err")"; bad=$((bad + 1))
  fi
done <"$log.cases"
rm -f "$log.cases" "$log.err"
[ "$n" -gt 0 ] || { echo "README and docs/ have no curl --unix-socket examples in console blocks"; exit 1; }
echo "README smoke: $n commands, $bad failed"
[ "$bad" -eq 0 ]
