#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for local replicas and tests: Debian's binaries, loopback only, trust auth.
#
#   postgres.sh start DIR PORT   create the cluster in DIR if missing, start it on 127.0.0.1:PORT (unix socket in
#                                DIR), create the database `slotserve`, wait until it answers, print its URL
#                                (postgresql://postgres@127.0.0.1:PORT/slotserve): the only line on stdout
#   postgres.sh stop DIR         stop it (fast mode: sessions are cut, nothing is lost); fine if it is not running
#
# Trust authentication is for a cluster that lives on loopback for one session: never point it at a real network.
# initdb and pg_ctl refuse root, so as root they run as the `postgres` system user, which gets DIR.
set -euo pipefail

die() { echo "postgres.sh: $*" >&2; exit 1; }
usage() { die "usage: postgres.sh start DIR PORT | postgres.sh stop DIR"; }

# initdb/pg_ctl on PATH (Debian keeps them off it), else the newest /usr/lib/postgresql/*/bin
find_bindir() {
    local found
    if found=$(command -v pg_ctl 2>/dev/null) && [ -x "$(dirname "$(readlink -f "$found")")/initdb" ]; then
        dirname "$(readlink -f "$found")"
        return
    fi
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$found" ] && [ -x "$found/initdb" ] && [ -x "$found/pg_ctl" ] || \
        die "PostgreSQL is not installed (no initdb/pg_ctl): run 'apt-get install postgresql' (or make postgresql)"
    echo "$found"
}

# run a PostgreSQL program as the cluster's owner: `postgres` when we are root, else ourselves
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local dir=$1 port=$2 bin data log running_port
    [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "PORT must be 1-65535, not '$port'"
    bin=$(find_bindir)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd -P)
    data=$dir/data log=$dir/postgres.log
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' system user (apt-get install postgresql)"
        chown -R postgres: "$dir"
        runuser -u postgres -- test -w "$dir" -a -x "$dir" || \
            die "the postgres user cannot reach $dir (a parent directory is private): use a directory under /tmp"
    fi
    cd "$dir"  # the programs run from a directory their user can read (not root's home)
    if [ ! -f "$data/PG_VERSION" ]; then
        as_owner "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 \
            || die "initdb failed in $data (see $dir/initdb.log)"
    fi
    if as_owner "$bin/pg_ctl" status -D "$data" >/dev/null 2>&1; then
        running_port=$(sed -n 4p "$data/postmaster.pid")
        [ "$running_port" = "$port" ] || die "the cluster in $dir is already running on port $running_port, not $port"
    else
        as_owner "$bin/pg_ctl" start -D "$data" -l "$log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='$dir'" >&2 \
            || die "PostgreSQL did not start on 127.0.0.1:$port (see $log)"
    fi
    local psql=("$bin/psql" -X -q -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -tA)
    if [ -z "$(as_owner "${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'slotserve'")" ]; then
        as_owner "${psql[@]}" -c "CREATE DATABASE slotserve" >&2 || die "could not create the database slotserve"
    fi
    echo "postgresql://postgres@127.0.0.1:$port/slotserve"
}

stop() {
    local dir=$1 bin data
    data=$dir/data
    [ -f "$data/postmaster.pid" ] || exit 0  # never started, or already stopped
    bin=$(find_bindir)
    dir=$(cd "$dir" && pwd -P)
    cd "$dir"
    as_owner "$bin/pg_ctl" status -D "$dir/data" >/dev/null 2>&1 || exit 0  # a stale pid file: not running
    as_owner "$bin/pg_ctl" stop -D "$dir/data" -m fast -w -t 60 >&2 || die "PostgreSQL in $dir did not stop"
}

case "${1:-}" in
    start) [ $# = 3 ] || usage; start "$2" "$3" ;;
    stop) [ $# = 2 ] || usage; stop "$2" ;;
    *) usage ;;
esac
