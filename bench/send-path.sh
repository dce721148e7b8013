#!/usr/bin/env bash
# Per-process cost of the gateway path, two (or more) builds side by side in one session (issue 20 (a)).
#   bench/send-path.sh --build base=/tmp/base-checkout --build new=. [--qlen 10,256] [--rounds 3] [--duration 4]
#                      [--env 'new:NAME=VALUE'] [--scenarios 'GET c1,GET c32,POST 4KiB c32']
# Each --build names a checkout whose src/Gateway and samples/EchoBackend are built in Release. --env sets an
# environment variable for that build's gateway process only (repeatable; the same checkout may be listed under two
# labels to compare a runtime setting side by side). For every build and
# every net.unix.max_dgram_qlen value (values other than the machine's need root: the sysctl is set while that pair's
# sockets are created, then restored), one gateway + echo pair is started; then, round by round, every scenario runs
# against every pair in a rotating order. Per run and per process (gateway, echo): CPU µs per request (utime+stime
# from /proc/PID/stat) and context switches per request (voluntary + nonvoluntary summed over /proc/PID/task/*/status,
# also broken down by thread name), measured around a LoadGen run without warm-up that follows a 1 s warm-up run.
# Prints a Markdown table of medians over rounds and writes every run as JSON lines to --out (default: a temp file).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source bench/lib.sh # stop_pids

BUILDS=() QLENS="" ROUNDS=3 DURATION=4 OUT="" ONLY=""
declare -A GW_ENV
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) BUILDS+=("$2"); shift ;;
    --qlen) QLENS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --out) OUT=$2; shift ;;
    --env) GW_ENV[${2%%:*}]+=" ${2#*:}"; shift ;;
    --scenarios) ONLY=$2; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
  shift
done
[[ ${#BUILDS[@]} -gt 0 ]] || BUILDS=("this=$ROOT")
QLEN_FILE=/proc/sys/net/unix/max_dgram_qlen
DEFAULT_QLEN=$(cat "$QLEN_FILE")
QLENS=${QLENS:-$DEFAULT_QLEN}
LOADGEN=(dotnet "$ROOT/bench/LoadGen/bin/Release/net10.0/LoadGen.dll")
[[ -f ${LOADGEN[1]} ]] || dotnet build bench/LoadGen/LoadGen.csproj -c Release --nologo -v quiet -clp:ErrorsOnly >&2

DIR=$(mktemp -d /tmp/send-path.XXXXXX)
OUT=${OUT:-$DIR/runs.jsonl}
: >"$OUT"
PIDS=()
cleanup() {
  echo "$DEFAULT_QLEN" >"$QLEN_FILE" 2>/dev/null || true
  stop_pids "${PIDS[@]}"
  [[ $OUT == "$DIR"/* ]] && rm -rf "$DIR"/*.sock || rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { printf '[send-path %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

declare -A GW ECHO
PAIRS=()
for build in "${BUILDS[@]}"; do
  label=${build%%=*} repo=${build#*=}
  for q in ${QLENS//,/ }; do
    key="$label/q$q"
    [[ $q == "$DEFAULT_QLEN" ]] || echo "$q" >"$QLEN_FILE"
    sock="$DIR/${label}-q$q"
    dotnet "$repo/samples/EchoBackend/bin/Release/net10.0/EchoBackend.dll" --Backend:SocketPath="$sock-echo.sock" \
      --Logging:LogLevel:Default=Warning >"$sock-echo.log" 2>&1 &
    ECHO[$key]=$!; PIDS+=("$!")
    # shellcheck disable=SC2086 # the --env words are NAME=VALUE pairs
    env ${GW_ENV[$label]:-} dotnet "$repo/src/Gateway/bin/Release/net10.0/Gateway.dll" --Gateway:Listen:UnixSocket="$sock-gw.sock" \
      --Gateway:DemoBackend:Enabled=false --Gateway:Backends:echo:Instances:0="$sock-echo.sock" \
      --Gateway:Routes:echo:Path='/echo/{**rest}' --Gateway:Routes:echo:Backend=echo \
      --Logging:LogLevel:Default=Warning >"$sock-gw.log" 2>&1 &
    GW[$key]=$!; PIDS+=("$!")
    for _ in $(seq 200); do
      [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 --unix-socket "$sock-gw.sock" http://localhost/echo/ready 2>/dev/null) == 200 ]] && break
      sleep 0.1
    done
    echo "$DEFAULT_QLEN" >"$QLEN_FILE" 2>/dev/null || true
    PAIRS+=("$key")
    log "started $key (gateway ${GW[$key]}, echo ${ECHO[$key]})"
  done
done

# Snapshot of one process: "cpu_ticks total_switches name=switches,..." (thread names grouped, digits removed).
snapshot() {
  python3 - "$1" <<'EOF'
import os, re, sys, collections
pid = sys.argv[1]
stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
ticks = int(stat[11]) + int(stat[12])
groups = collections.Counter()
for tid in os.listdir(f"/proc/{pid}/task"):
    try:
        comm = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
        status = open(f"/proc/{pid}/task/{tid}/status").read()
    except OSError:
        continue
    n = sum(int(m) for m in re.findall(r"_ctxt_switches:\s+(\d+)", status))
    groups[re.sub(r"\s*#?\d+$", "", comm) or comm] += n
print(ticks, sum(groups.values()), ",".join(f"{k}={v}" for k, v in sorted(groups.items())))
EOF
}

SCENARIOS=()
for spec in "GET c1|GET|0|1" "GET c32|GET|0|32" "POST 4KiB c32|POST|4096|32"; do
  [[ -z $ONLY || ",$ONLY," == *",${spec%%|*},"* ]] && SCENARIOS+=("$spec")
done
HZ=$(getconf CLK_TCK)
for ((round = 1; round <= ROUNDS; round++)); do
  for spec in "${SCENARIOS[@]}"; do
    IFS='|' read -r name method body conc <<<"$spec"
    n=${#PAIRS[@]}
    for ((k = 0; k < n; k++)); do
      key=${PAIRS[$(((k + round) % n))]}
      sock="$DIR/${key%/*}-${key#*/}-gw.sock"
      "${LOADGEN[@]}" --socket "$sock" --path /echo/hello --method "$method" --body-size "$body" --concurrency "$conc" \
        --warmup 0 --duration 1 --verify none --json >/dev/null || true
      g0=$(snapshot "${GW[$key]}"); e0=$(snapshot "${ECHO[$key]}")
      res=$("${LOADGEN[@]}" --socket "$sock" --path /echo/hello --method "$method" --body-size "$body" --concurrency "$conc" \
        --warmup 0 --duration "$DURATION" --verify all --json)
      g1=$(snapshot "${GW[$key]}"); e1=$(snapshot "${ECHO[$key]}")
      python3 - "$key" "$name" "$round" "$HZ" "$res" "$g0" "$g1" "$e0" "$e1" >>"$OUT" <<'EOF'
import json, sys
key, name, rnd, hz, res, g0, g1, e0, e1 = sys.argv[1:]
r = json.loads(res); hz = int(hz); n = max(1, r["correct"])
def split(s):
    t, c, g = s.split(" ", 2)
    return int(t), int(c), dict(kv.split("=", 1) for kv in g.split(",") if kv)
def diff(a, b):
    ta, ca, ga = split(a); tb, cb, gb = split(b)
    threads = {k: round((int(v) - int(ga.get(k, 0))) / n, 2) for k, v in gb.items() if int(v) - int(ga.get(k, 0)) > 0}
    return round((tb - ta) * 1e6 / hz / n, 1), round((cb - ca) / n, 2), threads
gc, gs, gt = diff(g0, g1); ec, es, et = diff(e0, e1)
print(json.dumps({"pair": key, "scenario": name, "round": int(rnd), "rps": r["rps"], "p50_us": r["p50_us"], "requests": n,
  "errors": r["errors"], "non_2xx": r["non_2xx"], "gw_cpu_us": gc, "gw_cs": gs, "echo_cpu_us": ec, "echo_cs": es,
  "gw_threads": gt, "echo_threads": et}))
EOF
      log "round $round $name $key: $(tail -1 "$OUT" | cut -c1-200)"
    done
  done
done

python3 - "$OUT" <<'EOF'
import json, sys, statistics, collections
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = collections.defaultdict(list)
for r in runs: by[(r["scenario"], r["pair"])].append(r)
print("| scenario | build/qlen | req/s | p50 µs | gateway CPU µs/req | gateway cs/req | echo CPU µs/req | echo cs/req | errors | rounds |")
print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
med = lambda rs, k: statistics.median(r[k] for r in rs)
for (s, p), rs in sorted(by.items()):
    print(f"| {s} | {p} | {med(rs,'rps'):,.0f} | {med(rs,'p50_us'):.0f} | {med(rs,'gw_cpu_us'):.1f} | {med(rs,'gw_cs'):.2f} | "
          f"{med(rs,'echo_cpu_us'):.1f} | {med(rs,'echo_cs'):.2f} | {sum(r['errors']+r['non_2xx'] for r in rs)} | {len(rs)} |")
print()
print("Gateway context switches per request by thread name (median run of each row):")
for (s, p), rs in sorted(by.items()):
    mid = sorted(rs, key=lambda r: r["gw_cs"])[len(rs)//2]
    top = sorted(mid["gw_threads"].items(), key=lambda kv: -kv[1])[:6]
    print(f"- {s}, {p}: " + ", ".join(f"{k} {v}" for k, v in top))
EOF
log "runs: $OUT"
