#!/usr/bin/env bash
# The multi-replica topology on one machine: PostgreSQL (the shared state), N slotserve replicas on loopback ports,
# and nginx in front, hashing each client to one replica as the Kubernetes Ingress does. See deploy/local/README.md.
#
#   cluster.sh up N             start everything; returns once every replica's /readyz is 200 and nginx answers
#   cluster.sh start-replica I  start (or restart) replica I with the flags `up` gave it
#   cluster.sh down             stop everything `up` started; succeeds when nothing of it runs any more
#   cluster.sh status           what runs
#
# Environment: CLUSTER_RUN (run dir, default deploy/local/run), CLUSTER_PORT (nginx, 8080), CLUSTER_BASE_PORT
# (replica i listens on base + i - 1; 8101), CLUSTER_PG_PORT (55432), CLUSTER_SLOTS (slots per replica; default
# SLOTSERVE_SLOTS, else 4), MODELS (model dir, default models), SLOTSERVE (the slotserve executable, default the
# checkout's .venv/bin/slotserve). Every SLOTSERVE_* variable reaches every replica. `up` records all of these in the
# run dir, so start-replica and down use what up used.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUN=${CLUSTER_RUN:-$HERE/run}
ENV_FILE=$RUN/cluster.env
STOP_WAIT_S=45       # a replica's SIGTERM drains within --shutdown-timeout-s (30 s by default)
READY_WAIT_S=180     # TensorFlow's import and the restore of remembered clients, on a slow machine

die() { echo "cluster.sh: $*" >&2; exit 1; }

python_bin() {
    if [ -x "$ROOT/.venv/bin/python" ]; then echo "$ROOT/.venv/bin/python"; else command -v python3; fi
}

nginx_bin() {  # Debian puts it in /usr/sbin, which a user's PATH may lack
    command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } \
        || die "nginx is not installed: run 'make nginx' (or 'sudo apt-get install -y nginx-light')"
}

# The settings: from the run dir once `up` recorded them (what start-replica and down must reuse), else from the
# environment. The recorded SLOTSERVE_* variables replace the caller's, so a restarted replica gets the same ones.
load_settings() {
    if [ -f "$ENV_FILE" ]; then
        while IFS= read -r name; do unset "$name"; done < <(compgen -e | grep '^SLOTSERVE_' || true)
        # shellcheck source=/dev/null
        . "$ENV_FILE"
        return
    fi
    N=0
    PORT=${CLUSTER_PORT:-8080}
    BASE_PORT=${CLUSTER_BASE_PORT:-8101}
    PG_PORT=${CLUSTER_PG_PORT:-55432}
    SLOTS=${CLUSTER_SLOTS:-${SLOTSERVE_SLOTS:-4}}
    MODEL_DIR=${MODELS:-$ROOT/models}
    BIN=${SLOTSERVE:-$ROOT/.venv/bin/slotserve}
    STATE_URL=""
}

save_settings() {
    local name
    (
        umask 077  # SLOTSERVE_ADMIN_KEY may be among them
        {
            for name in N PORT BASE_PORT PG_PORT SLOTS MODEL_DIR BIN STATE_URL; do
                printf '%s=%q\n' "$name" "${!name}"
            done
            while IFS= read -r name; do
                printf 'export %s=%q\n' "$name" "${!name}"
            done < <(compgen -e | grep '^SLOTSERVE_' || true)
        } > "$ENV_FILE"
    )
}

# pid_of FILE PATTERN: the pid in FILE if that process runs and its command line has PATTERN (a pid file left from a
# stopped cluster may name a process that reused the pid); nothing otherwise
pid_of() {
    local pid
    [ -f "$1" ] || return 0
    pid=$(cat "$1" 2>/dev/null || true)
    [[ "$pid" =~ ^[0-9]+$ ]] && running "$pid" || return 0
    if [ -r "/proc/$pid/cmdline" ] && ! tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$2"; then
        return 0
    fi
    echo "$pid"
}

replica_pid() { pid_of "$RUN/replica-$1.pid" "--replica-id replica-$1"; }
nginx_pid() { pid_of "$RUN/nginx/nginx.pid" "nginx"; }

# running PID: the process exists and has not exited (an exited child of an init that has not reaped it yet is a
# zombie, which kill -0 still finds)
running() {
    kill -0 "$1" 2>/dev/null || return 1
    [ -r "/proc/$1/stat" ] || return 0
    [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]
}

# wait_gone SECONDS PID...: true once none of them runs
wait_gone() {
    local deadline=$((SECONDS + $1)) pid left
    shift
    while :; do
        left=""
        for pid in "$@"; do running "$pid" && left="$left $pid"; done
        [ -z "$left" ] && return 0
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.2
    done
}

stop_replica() {
    local pid
    pid=$(replica_pid "$1")
    [ -n "$pid" ] || { rm -f "$RUN/replica-$1.pid"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$STOP_WAIT_S" "$pid"; then
        echo "cluster.sh: replica-$1 (pid $pid) did not stop within ${STOP_WAIT_S}s of SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone 10 "$pid" || die "replica-$1 (pid $pid) survived SIGKILL"
    fi
    rm -f "$RUN/replica-$1.pid"
}

# Start replica I in its own session (a terminal's Ctrl-C or hang-up does not reach it); does not wait for it.
launch_replica() {
    local i=$1 port=$((BASE_PORT + $1 - 1))
    echo "=== $(date '+%F %T') replica-$i on 127.0.0.1:$port" >> "$RUN/replica-$i.log"
    setsid "$BIN" serve --host 127.0.0.1 --port "$port" --state "$STATE_URL" --replica-id "replica-$i" \
        --model-dir "$MODEL_DIR" --slots "$SLOTS" >> "$RUN/replica-$i.log" 2>&1 < /dev/null &
    echo $! > "$RUN/replica-$i.pid"
}

# wait_ready I...: until every replica's /readyz is 200; fails (with its log's tail) as soon as one exits
wait_ready() {
    local i args=()
    for i in "$@"; do
        args+=("http://127.0.0.1:$((BASE_PORT + i - 1))/readyz" "$(cat "$RUN/replica-$i.pid")" "$RUN/replica-$i.log")
    done
    wait_http "$READY_WAIT_S" "${args[@]}"
}

# wait_http SECONDS (URL PID LOG)...: until every URL answers 200; fails at once, with LOG's tail, if PID exits.
# Python, not curl: a CI machine may lack curl. Proxies are bypassed (everything is on loopback).
wait_http() {
    "$(python_bin)" - "$@" <<'EOF'
import os, sys, time, urllib.request

timeout, rest = float(sys.argv[1]), sys.argv[2:]
waiting = [tuple(rest[i:i + 3]) for i in range(0, len(rest), 3)]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def gone(pid: str) -> bool:  # a zombie (exited, not yet reaped by the shell) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return os.path.isdir("/proc") or os.system(f"kill -0 {pid} 2>/dev/null") != 0


deadline = time.monotonic() + timeout
while waiting:
    for url, pid, log in list(waiting):
        try:
            with opener.open(url, timeout=5) as reply:
                if reply.status == 200:
                    waiting.remove((url, pid, log))
                    continue
        except OSError:
            pass
        if pid and gone(pid):
            tail = open(log, errors="replace").read()[-3000:] if os.path.exists(log) else ""
            sys.exit(f"cluster.sh: pid {pid} exited before {url} answered 200; end of {log}:\n{tail}")
    if waiting and time.monotonic() > deadline:
        sys.exit(f"cluster.sh: no 200 within {timeout:.0f}s from {', '.join(w[0] for w in waiting)} (see {waiting[0][2]})")
    time.sleep(0.2)
EOF
}

start_nginx() {
    local nginx conf servers="" i user="# user: nginx's default (not root)" log_flag=()
    nginx=$(nginx_bin)
    mkdir -p "$RUN/nginx/tmp"
    for ((i = 1; i <= N; i++)); do
        servers+="        server 127.0.0.1:$((BASE_PORT + i - 1)) max_fails=1 fail_timeout=3s;"$'\n'
    done
    # as root the workers would run as nobody, who may not enter the run dir (pytest's temp dirs are root-only);
    # this nginx listens on loopback only
    [ "$(id -u)" = 0 ] && user="user root;"
    conf=$(< "$HERE/nginx.conf")
    conf=${conf//@USER@/"$user"}
    conf=${conf//@RUN@/"$RUN/nginx"}
    conf=${conf//@CLIENT_HASH@/"$ROOT/deploy/nginx/client-hash.conf"}
    conf=${conf//@PORT@/"$PORT"}
    conf=${conf//@SERVERS@$'\n'/"$servers"}
    printf '%s\n' "$conf" > "$RUN/nginx/nginx.conf"
    # -e (nginx >= 1.19.5): its own error log from the first line, never the compiled-in one
    "$nginx" -h 2>&1 | grep -q -- ' -e ' && log_flag=(-e "$RUN/nginx/error.log")
    "$nginx" -t -q -p "$RUN/nginx/" "${log_flag[@]}" -c "$RUN/nginx/nginx.conf" \
        || die "nginx refused $RUN/nginx/nginx.conf"
    "$nginx" -p "$RUN/nginx/" "${log_flag[@]}" -c "$RUN/nginx/nginx.conf" < /dev/null >> "$RUN/nginx/nginx.out" 2>&1 \
        || die "nginx did not start: $(tail -n 5 "$RUN/nginx/error.log" "$RUN/nginx/nginx.out" 2>/dev/null)"
    wait_http 30 "http://127.0.0.1:$PORT/healthz" "" "$RUN/nginx/error.log"
}

stop_nginx() {
    local pid
    pid=$(nginx_pid)
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    wait_gone 15 "$pid" || { kill -KILL "$pid" 2>/dev/null || true; wait_gone 5 "$pid"; }
}

cmd_up() {
    local n=${1:-} i demo_pid
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "usage: cluster.sh up N (N replicas, at least 1)"
    [ -f "$ENV_FILE" ] && die "a cluster was started in $RUN: 'cluster.sh down' first"
    load_settings
    N=$n
    [ -x "$BIN" ] || die "no slotserve at $BIN: run 'make install' (or set SLOTSERVE)"
    [ -x "$HERE/postgres.sh" ] || die "missing $HERE/postgres.sh"
    nginx_bin > /dev/null
    mkdir -p "$RUN" "$(dirname "$MODEL_DIR")"
    RUN=$(cd "$RUN" && pwd)
    ENV_FILE=$RUN/cluster.env
    MODEL_DIR=$(cd "$(dirname "$MODEL_DIR")" && pwd)/$(basename "$MODEL_DIR")
    # from here on, a failure stops whatever did start
    trap 'status=$?; [ "$status" = 0 ] || { echo "cluster.sh: up failed; stopping what it started" >&2; cmd_down >&2 || true; }' EXIT
    "$BIN" demo-models "$MODEL_DIR" > "$RUN/demo-models.log" 2>&1 &  # only names the dir does not have yet
    demo_pid=$!
    STATE_URL=$("$HERE/postgres.sh" start "$RUN/postgres" "$PG_PORT")
    [ -n "$STATE_URL" ] || die "postgres.sh start printed no URL"
    wait "$demo_pid" || die "slotserve demo-models failed: $(tail -n 5 "$RUN/demo-models.log")"
    save_settings
    for ((i = 1; i <= N; i++)); do launch_replica "$i"; done
    wait_ready $(seq 1 "$N")
    start_nginx
    trap - EXIT
    echo "cluster: $N replicas (127.0.0.1:$BASE_PORT..$((BASE_PORT + N - 1))) behind http://127.0.0.1:$PORT," \
         "state $STATE_URL, logs in $RUN"
}

cmd_start_replica() {
    local i=${1:-}
    load_settings
    [ -f "$ENV_FILE" ] || die "no cluster in $RUN: 'cluster.sh up N' first"
    [[ "$i" =~ ^[1-9][0-9]*$ ]] && [ "$i" -le "$N" ] || die "usage: cluster.sh start-replica I (1..$N)"
    stop_replica "$i"
    launch_replica "$i"
    wait_ready "$i"
    echo "replica-$i ready on 127.0.0.1:$((BASE_PORT + i - 1))"
}

cmd_down() {
    local f i pid pids=() left=()
    load_settings
    # every replica with a pid file, whatever N was: SIGTERM to all, then wait (they drain in parallel)
    for f in "$RUN"/replica-*.pid; do
        [ -f "$f" ] || continue
        i=${f##*/replica-}
        i=${i%.pid}
        pid=$(replica_pid "$i")
        if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; pids+=("$pid"); fi
    done
    if [ "${#pids[@]}" -gt 0 ] && ! wait_gone "$STOP_WAIT_S" "${pids[@]}"; then
        echo "cluster.sh: replicas still running ${STOP_WAIT_S}s after SIGTERM; killing them" >&2
        kill -KILL "${pids[@]}" 2>/dev/null || true
        wait_gone 10 "${pids[@]}" || true
    fi
    rm -f "$RUN"/replica-*.pid
    stop_nginx
    if [ -d "$RUN/postgres" ]; then "$HERE/postgres.sh" stop "$RUN/postgres"; fi
    for pid in "${pids[@]}"; do running "$pid" && left+=("replica pid $pid"); done
    [ -z "$(nginx_pid)" ] || left+=("nginx pid $(nginx_pid)")
    [ "${#left[@]}" -eq 0 ] || die "still running: ${left[*]}"
    rm -f "$ENV_FILE"
    echo "cluster: stopped"
}

cmd_status() {
    local i pid
    load_settings
    [ -f "$ENV_FILE" ] || { echo "no cluster in $RUN"; return 0; }
    echo "state: $STATE_URL"
    for ((i = 1; i <= N; i++)); do
        pid=$(replica_pid "$i")
        echo "replica-$i 127.0.0.1:$((BASE_PORT + i - 1)) ${pid:+pid }${pid:-not running}"
    done
    pid=$(nginx_pid)
    echo "nginx 127.0.0.1:$PORT ${pid:+pid }${pid:-not running}"
}

case "${1:-}" in
    up) cmd_up "${2:-}" ;;
    start-replica) cmd_start_replica "${2:-}" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) die "usage: cluster.sh up N | start-replica I | down | status" ;;
esac
