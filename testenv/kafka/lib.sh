# shellcheck shell=bash disable=SC2034 # the variables are used by the scripts that source this
# Shared settings of the testenv/kafka scripts (sourced, not run).
#
# Environment (all optional):
#   CNSTREAM_CACHE          cache root, default $HOME/.cache/cnstream
#   CNSTREAM_KAFKA_VERSION  Apache Kafka version, default 4.3.1
#   CNSTREAM_KAFKA_DIR      state dir of a running cluster, default ${TMPDIR:-/tmp}/cnstream-kafka
#   CNSTREAM_KAFKA_PORT     PLAINTEXT port of node 1, default 19092 (node n: port + 2(n-1);
#                           its CONTROLLER listener is on the PLAINTEXT port + 1)
#   CNSTREAM_KAFKA_LOG4J_VERSION  version of log4j-slf4j-impl, default 2.25.4
#   CNSTREAM_KAFKA_HEAP     JVM heap per node, default 1g
#   CNSTREAM_KAFKA_START_TIMEOUT  seconds start waits for readiness, default 180
#   CNSTREAM_KAFKA_STOP_TIMEOUT   seconds stop waits after SIGTERM before SIGKILL, default 30

KAFKA_VERSION=${CNSTREAM_KAFKA_VERSION:-4.3.1}
# slf4j 1.x -> log4j2 bridge for the broker logs: Kafka 4.x depends on slf4j-api 1.7 and
# log4j-core (the version below is the one kafka-server 4.3.1 brings), not on a binding.
LOG4J_VERSION=${CNSTREAM_KAFKA_LOG4J_VERSION:-2.25.4}
CACHE_ROOT=${CNSTREAM_CACHE:-${HOME:?HOME is not set; set CNSTREAM_CACHE}/.cache/cnstream}
KAFKA_HOME=$CACHE_ROOT/kafka-$KAFKA_VERSION
KAFKA_LIBS=$KAFKA_HOME/libs
STATE_DIR=${CNSTREAM_KAFKA_DIR:-${TMPDIR:-/tmp}/cnstream-kafka}
BASE_PORT=${CNSTREAM_KAFKA_PORT:-19092}
HEAP=${CNSTREAM_KAFKA_HEAP:-1g}
START_TIMEOUT=${CNSTREAM_KAFKA_START_TIMEOUT:-180}
STOP_TIMEOUT=${CNSTREAM_KAFKA_STOP_TIMEOUT:-30}
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() {
	echo "testenv/kafka: $*" >&2
	exit 1
}

log() {
	echo "testenv/kafka: $*" >&2
}

# plaintext_port N / controller_port N: the ports of node N (1-based).
plaintext_port() { echo $((BASE_PORT + 2 * ($1 - 1))); }
controller_port() { echo $((BASE_PORT + 2 * ($1 - 1) + 1)); }

# node_alive PIDFILE: true when the pid file names a live Kafka process.
# The command line is checked so that a recycled pid is never taken for a broker.
node_alive() {
	local pidfile=$1 pid
	[ -s "$pidfile" ] || return 1
	pid=$(<"$pidfile")
	[ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka '
}

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# node_dirs: the node directories of the cluster in STATE_DIR, one a line.
node_dirs() {
	local d
	for d in "$STATE_DIR"/node-*; do
		[ -d "$d" ] && echo "$d"
	done
	return 0
}

# bootstrap_of DIR: the bootstrap address list recorded by start.
bootstrap_of() {
	[ -s "$1/bootstrap" ] && cat "$1/bootstrap"
}
