# Shared by the bench scripts: source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" (paths are relative to the repository root).

# build_release PROJECT...: Release builds of the given projects, printing errors only.
build_release() {
  local proj
  for proj in "$@"; do
    dotnet build "$proj" -c Release --nologo -v quiet -clp:ErrorsOnly >&2
  done
}

# stop_pids PID...: SIGTERM to each, up to 5 s for each to exit, then SIGKILL (the scripts' cleanup on EXIT).
stop_pids() {
  local pid
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
}

# wait_http SOCKET PATH SECONDS: readiness as a bounded loop of HTTP GETs over the Unix socket (no sleep as
# synchronisation beyond this poll); 0 once PATH answers 200. LAST_CODE keeps the last HTTP status seen.
LAST_CODE=""
wait_http() {
  local sock=$1 path=$2 deadline=$((SECONDS + $3)) code
  while ((SECONDS < deadline)); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 --unix-socket "$sock" "http://localhost$path" 2>/dev/null || true)
    LAST_CODE=$code
    [[ $code == 200 ]] && return 0
    sleep 0.1
  done
  return 1
}

# start_nginx TEMPLATE WORKERS: nginx on $DIR/nginx.sock, configured from bench/nginx/TEMPLATE (its @DIR@, @WORKERS@
# and @USER@ filled) in $DIR/nginx; its PID joins PIDS. Once it answers /echo/ready: NGINX_PID and NGINX_WORKER_PIDS
# (comma-separated) are set. Otherwise its log goes to stderr and it returns 1.
start_nginx() {
  local template=$1 workers=$2 user_line="# (not root: nginx runs as the current user)"
  [[ $(id -u) -eq 0 ]] && user_line="user root root; # workers must reach the 0755 Kestrel socket owned by this user"
  mkdir -p "$DIR/nginx"
  sed -e "s|@DIR@|$DIR|g" -e "s|@WORKERS@|$workers|g" -e "s|@USER@|$user_line|" "bench/nginx/$template" >"$DIR/nginx/nginx.conf"
  nginx -p "$DIR/nginx" -c "$DIR/nginx/nginx.conf" -e stderr -g 'daemon off;' >"$DIR/nginx.log" 2>&1 &
  NGINX_PID=$!; PIDS+=("$NGINX_PID")
  wait_http "$DIR/nginx.sock" /echo/ready 10 || { cat "$DIR/nginx.log" >&2; echo "nginx did not start" >&2; return 1; }
  NGINX_WORKER_PIDS=$(pgrep -P "$NGINX_PID" | paste -sd, -)
}
