#!/usr/bin/env bash
# A single-node Kafka-protocol broker on 127.0.0.1, for the tests, the
# benchmark and configs/kafka.toml.
#
#   scripts/kafka.sh install  build the broker if it is not cached yet
#   scripts/kafka.sh up       install (first time only) and start it; waits
#                             until it answers; does nothing if it runs
#   scripts/kafka.sh down     stop it (by the PID `up` recorded)
#   scripts/kafka.sh status   say whether it runs (exit 0) or not (exit 1)
#   scripts/kafka.sh brokers  print its address (for `brokers = ...`)
#   scripts/kafka.sh topic NAME [PARTITIONS]
#                             create a topic (default 4 partitions): a
#                             consumer subscribing to a missing topic does
#                             not create it
#
# The broker is tansu (crates.io, Apache-2.0), a Kafka-wire-protocol broker
# in Rust with in-memory storage: Apache Kafka's jars are not on a registry
# these machines reach, and Debian packages no Kafka. `up` builds it with
# cargo the first time (a debug build: about 8 minutes on 2 cores) and keeps
# the binary under ~/.cache/dataplane, so later runs start in a second.
# Storage is memory only: `down` forgets every topic.
#
# Environment: DATAPLANE_KAFKA_PORT (default 19092).
set -euo pipefail

TANSU_VERSION=0.6.0
PORT=${DATAPLANE_KAFKA_PORT:-19092}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/dataplane
ROOT=$CACHE/tansu-$TANSU_VERSION
BIN=$ROOT/bin/tansu
RUN=$CACHE/run
PIDFILE=$RUN/tansu-$PORT.pid
LOG=$RUN/tansu-$PORT.log

answers() {
    # A TCP connect is enough: tansu listens only once it can serve.
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

running_pid() {
    [ -f "$PIDFILE" ] || return 1
    local pid
    pid=$(cat "$PIDFILE")
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

install() {
    [ -x "$BIN" ] && return 0
    mkdir -p "$CACHE"
    # One build at a time: CI starts one early in the background, and `up`
    # then waits for it here instead of building again.
    exec 9>"$CACHE/tansu-install.lock"
    flock 9
    if [ ! -x "$BIN" ]; then
        echo "kafka.sh: building tansu $TANSU_VERSION into $ROOT (first run only, several minutes)" >&2
        # `dynostore` is the least feature set that serves memory:// storage.
        cargo install tansu --version "$TANSU_VERSION" --locked --debug \
            --no-default-features --features dynostore --root "$ROOT" >&2
    fi
    flock -u 9
}

up() {
    if pid=$(running_pid) && answers; then
        echo "kafka.sh: broker already running (pid $pid) on 127.0.0.1:$PORT" >&2
        return 0
    fi
    if answers; then
        echo "kafka.sh: 127.0.0.1:$PORT is taken by another process; set DATAPLANE_KAFKA_PORT" >&2
        return 1
    fi
    install
    mkdir -p "$RUN"
    "$BIN" broker --cluster-id dataplane-local \
        --listener-url "tcp://127.0.0.1:$PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$PORT" \
        --storage-engine memory://tansu/ >"$LOG" 2>&1 &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 150); do
        if answers; then
            echo "kafka.sh: broker up (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT, log $LOG" >&2
            return 0
        fi
        if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
            echo "kafka.sh: the broker exited at start; its log ($LOG):" >&2
            tail -20 "$LOG" >&2
            rm -f "$PIDFILE"
            return 1
        fi
        sleep 0.1
    done
    echo "kafka.sh: the broker did not answer within 15 s; its log ($LOG):" >&2
    tail -20 "$LOG" >&2
    down
    return 1
}

down() {
    local pid
    if ! pid=$(running_pid); then
        rm -f "$PIDFILE"
        echo "kafka.sh: no broker running on port $PORT" >&2
        return 0
    fi
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$PIDFILE"
    echo "kafka.sh: broker stopped (pid $pid)" >&2
}

case "${1:-}" in
install) install ;;
up) up ;;
down) down ;;
status)
    if pid=$(running_pid) && answers; then
        echo "running (pid $pid) on 127.0.0.1:$PORT"
    else
        echo "not running"
        exit 1
    fi
    ;;
brokers) echo "127.0.0.1:$PORT" ;;
topic)
    [ -n "${2:-}" ] || { echo "usage: scripts/kafka.sh topic NAME [PARTITIONS]" >&2; exit 64; }
    "$BIN" topic create "$2" --partitions "${3:-4}" --broker "tcp://127.0.0.1:$PORT"
    ;;
*)
    echo "usage: scripts/kafka.sh install|up|down|status|brokers|topic" >&2
    exit 64
    ;;
esac
