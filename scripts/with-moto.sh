#!/usr/bin/env bash
# Usage: scripts/with-moto.sh CMD [ARGS...]
# Starts moto server (.venv/bin/moto_server) on 127.0.0.1 and a free port, logging to
# target/moto.log, exports HUNTER_MOTO_URL and fake AWS credentials/region, runs CMD,
# and always stops moto: on success, failure, Ctrl-C or TERM (and, through a watchdog,
# even if this script is killed with SIGKILL). Exits with CMD's exit code.
set -euo pipefail

if [[ $# -eq 0 ]]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/ensure-venv.sh"
python="$root/.venv/bin/python"
moto="$root/.venv/bin/moto_server"
log="$root/target/moto.log"
mkdir -p "$root/target"

port="$("$python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()')"
url="http://127.0.0.1:$port"

moto_pid=""
watchdog_pid=""
cmd_pid=""

# shellcheck disable=SC2317 # invoked through the traps below
kill_tree() { # kill_tree SIGNAL PID: the process and its children
    local sig="$1" pid="$2" child
    for child in $(pgrep -P "$pid" 2>/dev/null || true); do
        kill_tree "$sig" "$child"
    done
    kill "-$sig" "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317 # invoked through the traps below
stop_moto() {
    if [[ -n "$watchdog_pid" ]]; then
        kill_tree TERM "$watchdog_pid"
        watchdog_pid=""
    fi
    [[ -n "$moto_pid" ]] || return 0
    local pid="$moto_pid"
    moto_pid=""
    kill_tree TERM "$pid"
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill_tree KILL "$pid"
    fi
    wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317 # invoked through the traps below
on_signal() { # on_signal NAME CODE
    trap - EXIT
    if [[ -n "$cmd_pid" ]]; then
        kill "-$1" "$cmd_pid" 2>/dev/null || true
        wait "$cmd_pid" 2>/dev/null || true
    fi
    stop_moto
    exit "$2"
}
trap 'stop_moto' EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM

"$moto" -H 127.0.0.1 -p "$port" >"$log" 2>&1 </dev/null &
moto_pid=$!

# Watchdog: stops moto if this script dies without running its traps (SIGKILL).
script_pid=$$
(
    while kill -0 "$script_pid" 2>/dev/null; do sleep 1; done
    kill -TERM "$moto_pid" 2>/dev/null || true
) >/dev/null 2>&1 </dev/null &
watchdog_pid=$!

if ! "$python" - "$url/moto-api/" "$moto_pid" <<'PY'
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("moto server exited before it answered")
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.2)
sys.exit("moto server did not answer within 30 s")
PY
then
    echo "with-moto: moto server at $url failed to start; last lines of $log:" >&2
    tail -n 20 "$log" >&2 || true
    exit 1
fi

export HUNTER_MOTO_URL="$url"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1

# CMD runs as a background job so that the traps fire at once on INT/TERM (bash defers
# traps while a foreground command runs). A background job of a script starts with INT
# and QUIT ignored, so the exec wrapper restores their defaults; stdin is passed on.
"$python" -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
signal.signal(signal.SIGQUIT, signal.SIG_DFL)
try:
    os.execvp(sys.argv[1], sys.argv[1:])
except OSError as e:
    print(f"with-moto: {sys.argv[1]}: {e.strerror}", file=sys.stderr)
    sys.exit(127)' "$@" <&0 &
cmd_pid=$!
rc=0
wait "$cmd_pid" || rc=$?
cmd_pid=""
exit "$rc"
