# shellcheck shell=bash disable=SC2034 # the variables are used by the scripts that source this
# Shared settings of the testenv/nats scripts (sourced, not run).
#
# Environment (all optional):
#   CNSTREAM_CACHE               cache root, default $HOME/.cache/cnstream
#   CNSTREAM_NATS_VERSION        nats-server version built by fetch, default v2.15.2
#   CNSTREAM_NATS_SERVER         a nats-server binary to use instead of the cached build
#                                (e.g. /usr/sbin/nats-server, Debian's 2.9.10)
#   CNSTREAM_NATS_DIR            state dir (config, JetStream store, log, pid), default
#                                ${TMPDIR:-/tmp}/cnstream-nats
#   CNSTREAM_NATS_PORT           client port, default 14222
#   CNSTREAM_NATS_MONITOR_PORT   HTTP monitoring port (/healthz), default 18222
#   CNSTREAM_NATS_START_TIMEOUT  seconds start waits for readiness, default 60
#   CNSTREAM_NATS_STOP_TIMEOUT   seconds stop waits after SIGTERM before SIGKILL, default 20

NATS_VERSION=${CNSTREAM_NATS_VERSION:-v2.15.2}
CACHE_ROOT=${CNSTREAM_CACHE:-${HOME:?HOME is not set; set CNSTREAM_CACHE}/.cache/cnstream}
NATS_HOME=$CACHE_ROOT/nats-server-$NATS_VERSION
NATS_BIN=${CNSTREAM_NATS_SERVER:-$NATS_HOME/nats-server}
STATE_DIR=${CNSTREAM_NATS_DIR:-${TMPDIR:-/tmp}/cnstream-nats}
PORT=${CNSTREAM_NATS_PORT:-14222}
MONITOR_PORT=${CNSTREAM_NATS_MONITOR_PORT:-18222}
START_TIMEOUT=${CNSTREAM_NATS_START_TIMEOUT:-60}
STOP_TIMEOUT=${CNSTREAM_NATS_STOP_TIMEOUT:-20}
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() {
	echo "testenv/nats: $*" >&2
	exit 1
}

log() {
	echo "testenv/nats: $*" >&2
}

# server_alive: true when $STATE_DIR/nats.pid names a live nats-server run from
# $STATE_DIR (the command line is checked so that a recycled pid is never taken for it).
server_alive() {
	local pid
	[ -s "$STATE_DIR/nats.pid" ] || return 1
	pid=$(<"$STATE_DIR/nats.pid")
	[ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$STATE_DIR/nats.conf"
}

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# nats_ping PORT: true when a NATS server on 127.0.0.1:PORT answers PING with PONG.
nats_ping() {
	local line
	# (The braces keep 2>/dev/null from becoming permanent like exec's own redirections.)
	{ exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
	if ! IFS= read -r -t 2 line <&3 || [[ $line != INFO* ]]; then
		exec 3>&-
		return 1
	fi
	printf 'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n' >&3
	IFS= read -r -t 2 line <&3 || line=
	exec 3>&-
	[[ $line == PONG* ]]
}

# healthy: true when the monitoring endpoint reports the server (and JetStream) ready.
healthy() {
	curl -fsS --max-time 2 "http://127.0.0.1:$MONITOR_PORT/healthz" >/dev/null 2>&1
}
