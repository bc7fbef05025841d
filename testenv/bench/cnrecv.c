/*
 * cnrecv: C reference receiver for NETLINK_CONNECTOR multicast datagrams.
 *
 * What it measures: the CPU cost per datagram of draining a pre-filled
 * connector socket receive queue with recvmmsg(2), the floor that the Go
 * receivers are compared against (testenv/bench-source, docs/BENCHMARKS.md).
 *
 * Protocol (shared with testenv/cmd/cnbench-recv):
 *   1. open the socket, bind with nl_pid 0, force the receive buffer
 *      (SO_RCVBUFFORCE), join the multicast group, print "ready" on stdout;
 *   2. wait for one line on stdin ("go"); meanwhile the harness fills the queue;
 *   3. drain with recvmmsg(MSG_DONTWAIT) in batches until EAGAIN (queue empty)
 *      or until -n datagrams with the wanted cn_msg id were counted;
 *   4. print one JSON line with process CPU time (CLOCK_PROCESS_CPUTIME_ID)
 *      and wall time (CLOCK_MONOTONIC) of the drain only.
 *
 * Usage: cnrecv [-g group] [-i idx:val] [-b batch] [-s bufsize] [-r rcvbuf] [-n count]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

static void die(const char *what)
{
	fprintf(stderr, "cnrecv: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void usage(void)
{
	fprintf(stderr, "usage: cnrecv [-g group] [-i idx:val] [-b batch] [-s bufsize] "
			"[-r rcvbuf_bytes] [-n count]\n");
	exit(2);
}

static int64_t now_ns(clockid_t clk)
{
	struct timespec ts;
	if (clock_gettime(clk, &ts) != 0)
		die("clock_gettime");
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	unsigned group = 11, idx = 11, val = 77;
	int batch = 64, bufsize = 256, rcvbuf = 64 << 20;
	long want = 0; /* 0: drain until the queue is empty */
	int opt;

	while ((opt = getopt(argc, argv, "g:i:b:s:r:n:")) != -1) {
		switch (opt) {
		case 'g': group = (unsigned)atoi(optarg); break;
		case 'i':
			if (sscanf(optarg, "%u:%u", &idx, &val) != 2)
				usage();
			break;
		case 'b': batch = atoi(optarg); break;
		case 's': bufsize = atoi(optarg); break;
		case 'r': rcvbuf = atoi(optarg); break;
		case 'n': want = atol(optarg); break;
		default: usage();
		}
	}
	if (group < 1 || group > 32 || batch < 1 || bufsize < 36 || want < 0)
		usage();

	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_CONNECTOR);
	if (fd < 0)
		die("socket(AF_NETLINK, NETLINK_CONNECTOR)");
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_pid = 0 };
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
		die("bind");
	if (rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
		die("setsockopt(SO_RCVBUFFORCE) (needs CAP_NET_ADMIN)");
	if (setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) != 0)
		die("setsockopt(NETLINK_ADD_MEMBERSHIP)");

	/* One buffer per slot of the batch, like the Go ReadBatch. */
	char *bufs = calloc((size_t)batch, (size_t)bufsize);
	struct mmsghdr *msgs = calloc((size_t)batch, sizeof *msgs);
	struct iovec *iov = calloc((size_t)batch, sizeof *iov);
	struct sockaddr_nl *from = calloc((size_t)batch, sizeof *from);
	if (!bufs || !msgs || !iov || !from)
		die("calloc");

	printf("ready\n");
	fflush(stdout);
	char line[64];
	if (!fgets(line, sizeof line, stdin)) {
		fprintf(stderr, "cnrecv: stdin closed before \"go\"\n");
		return 1;
	}

	long matched = 0, other = 0, truncated = 0, enobufs = 0;
	int64_t cpu0 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
	int64_t wall0 = now_ns(CLOCK_MONOTONIC);
	while (want == 0 || matched < want) {
		for (int i = 0; i < batch; i++) {
			iov[i].iov_base = bufs + (size_t)i * bufsize;
			iov[i].iov_len = (size_t)bufsize;
			msgs[i].msg_hdr = (struct msghdr){
				.msg_name = &from[i], .msg_namelen = sizeof from[i],
				.msg_iov = &iov[i], .msg_iovlen = 1,
			};
		}
		int n = recvmmsg(fd, msgs, (unsigned)batch, MSG_DONTWAIT, NULL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break; /* queue empty: the drain is over */
			if (errno == ENOBUFS) {
				enobufs++;
				continue;
			}
			if (errno == EINTR)
				continue;
			die("recvmmsg");
		}
		for (int i = 0; i < n; i++) {
			const unsigned char *p = (const unsigned char *)iov[i].iov_base;
			if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC)
				truncated++;
			uint32_t mi, mv;
			if (msgs[i].msg_len < 24) {
				other++;
				continue;
			}
			memcpy(&mi, p + 16, 4);
			memcpy(&mv, p + 20, 4);
			if (mi == idx && mv == val)
				matched++;
			else
				other++;
		}
	}
	int64_t wall = now_ns(CLOCK_MONOTONIC) - wall0;
	int64_t cpu = now_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu0;

	/* Kernel-side drops of this socket (sk_drops), if any. */
	uint32_t mem[SK_MEMINFO_VARS] = { 0 };
	socklen_t ml = sizeof mem;
	long drops = -1;
	if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &ml) == 0 && ml > SK_MEMINFO_DROPS * 4)
		drops = (long)mem[SK_MEMINFO_DROPS];

	double per = matched ? (double)cpu / (double)matched : 0;
	double rate = wall ? (double)matched / ((double)wall / 1e9) : 0;
	printf("{\"receiver\":\"c-recvmmsg\",\"datagrams\":%ld,\"cpu_ns\":%" PRId64
	       ",\"wall_ns\":%" PRId64 ",\"ns_per_datagram\":%.1f,\"drain_per_sec\":%.0f,\"complete\":%s"
	       ",\"other\":%ld,\"truncated\":%ld,\"enobufs\":%ld,\"kernel_drops\":%ld"
	       ",\"batch\":%d,\"bufsize\":%d}\n",
	       matched, cpu, wall, per, rate, (want == 0 || matched >= want) ? "true" : "false", other, truncated, enobufs, drops, batch, bufsize);
	fflush(stdout);
	return 0;
}
