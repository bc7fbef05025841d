/*
 * threadstorm: a burst of process events for the connector loss benchmark.
 *
 * Loops pthread_create + pthread_join of an empty thread for D seconds
 * (default 5) and prints {"threads":N,"seconds":D,"elapsed_ns":E}.
 * Each thread makes exactly two proc connector events: FORK (clone) when it is
 * created and EXIT when it ends, so the storm's own event count is 2*N.
 * On a calm 2-vCPU VM this makes 150-177k events/s (shared FACTS); a slower
 * host made ~25k/s with two listeners (docs/BENCHMARKS.md).
 *
 * Usage: threadstorm [seconds]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void *empty(void *arg) { return arg; }

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 5;
	if (secs <= 0) {
		fprintf(stderr, "usage: threadstorm [seconds > 0]\n");
		return 2;
	}
	long long start = now_ns(), end = start + (long long)(secs * 1e9), t;
	long threads = 0;
	do {
		/* Check the clock every 256 threads: cheap, and exact enough. */
		for (int i = 0; i < 256; i++) {
			pthread_t th;
			int err = pthread_create(&th, NULL, empty, NULL);
			if (err) {
				fprintf(stderr, "threadstorm: pthread_create: %s\n", strerror(err));
				return 1;
			}
			pthread_join(th, NULL);
			threads++;
		}
		t = now_ns();
	} while (t < end);
	printf("{\"threads\":%ld,\"seconds\":%g,\"elapsed_ns\":%lld}\n", threads, secs, t - start);
	return 0;
}
