# Shared by the bench scripts: source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" (paths are relative to the repository root).

# build_release PROJECT...: Release builds of the given projects, printing errors only.
build_release() {
  local proj
  for proj in "$@"; do
    dotnet build "$proj" -c Release --nologo -v quiet -clp:ErrorsOnly >&2
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
