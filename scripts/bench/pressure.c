/* pressure.c: how far past the line, and how late, the soft limit's
 * callback and the tree budget act (issue 14). Run under the preload; the
 * tree mode under `memlimit --global-memory LIMIT` (a tree, the default).
 *
 *   pressure soft THREADS ROUNDS
 *     ml_on_memory_pressure at the process's memory + 64 MiB. In each
 *     round THREADS threads are started, then (once they exist, so that
 *     what starting them allocated is in the figure) allocate 4 KiB blocks
 *     (touched) and keep them, adding each to a shared count of what the
 *     program holds; the thread whose block takes that count (plus the
 *     memory at the start) over the threshold notes the time. The callback notes the time and the
 *     exact memory (ml_stats) and stops the threads; then everything is
 *     freed, which re-arms the threshold. Prints, per round:
 *         soft ROUND OVERSHOOT_BYTES LATENCY_NS
 *     where OVERSHOOT = the exact memory when the callback ran less the
 *     threshold, LATENCY = callback time less the time of the request that
 *     crossed. The callback runs inside the malloc whose request crosses,
 *     before it returns the block: OVERSHOOT may be below 0 by up to a
 *     block.
 *
 *   pressure tree PROCS THREADS LIMIT_BYTES
 *     PROCS processes of THREADS threads each allocate 4 KiB blocks until
 *     malloc fails, with the program's count and the first refusal's time
 *     in memory shared by the processes (a memfd's: not counted). Prints
 *         tree OVERSHOOT_BYTES LATENCY_NS
 *     OVERSHOOT = the sum of the processes' exact memory (and the parent's)
 *     once all are refused, less the limit; LATENCY = the first refusal
 *     less the moment the count (plus every process's memory before it
 *     started) crossed the limit.
 *
 *   pressure giveback LIMIT_BYTES ROUNDS
 *     A child holds 60% of the limit; it exits (odd rounds: is SIGKILLed);
 *     as soon as the parent has waited for it, it tells another child,
 *     started before and waiting, to ask for 60% in a loop until malloc
 *     succeeds. Prints, per round:
 *         giveback exit|kill LATENCY_NS REFUSALS
 *     LATENCY = the success less the wait's return (the pipe's wake-up
 *     included); REFUSALS = the mallocs refused before it. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../shim/memlimits.h"
#include "bench.h"
#include "uncounted.h"

#define BLOCK 4096
#define MiB ((int64_t)1 << 20)

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t memory(void)
{
	struct ml_stats s;
	if (ml_stats(&s) != ML_OK) {
		fprintf(stderr, "pressure: ml_stats failed (not preloaded?)\n");
		exit(2);
	}
	return s.live_bytes + s.mapped_bytes;
}

/* Shared by the threads (and, for the tree, the processes). */
struct shared {
	int64_t held;        /* bytes the program holds (atomic) */
	int64_t line;        /* held crosses the limit when it reaches this */
	int64_t t_cross;     /* when held reached line, 0 before (atomic) */
	int64_t t_refused;   /* the first refusal (tree), 0 before (atomic) */
	int stop;            /* the threads stop (atomic) */
	int64_t mem[64];     /* tree: each process's exact memory at the end */
	int64_t mem_parent;
};
static struct shared *sh;

static pthread_barrier_t *start; /* soft: the threads exist before the line */

static void *hog(void *arg)
{
	void **list = NULL;
	(void)arg;
	if (start)
		pthread_barrier_wait(start);
	while (!__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE)) {
		/* Counted as asked for: the crossing's time is that of the
		 * request that crosses, before malloc sees it. */
		int64_t h = __atomic_add_fetch(&sh->held, BLOCK, __ATOMIC_RELAXED);
		if (h >= sh->line && h - BLOCK < sh->line)
			__atomic_store_n(&sh->t_cross, now_ns(), __ATOMIC_RELAXED);
		void **p = malloc(BLOCK);
		if (!p) {
			int64_t zero = 0, t = now_ns();
			__atomic_compare_exchange_n(&sh->t_refused, &zero, t, false,
						    __ATOMIC_RELAXED, __ATOMIC_RELAXED);
			__atomic_add_fetch(&sh->held, -BLOCK, __ATOMIC_RELAXED);
			break;
		}
		memset(p, 1, BLOCK);
		*p = list;
		list = p;
	}
	return list;
}

static void free_list(void **list)
{
	while (list) {
		void **next = *list;
		free(list);
		list = next;
	}
}

/* Starts n threads; with `start`, once they wait on it, sets sh->line to
 * `at` less the memory then, and lets them go. */
static void run_threads(int n, void **lists, int64_t at)
{
	pthread_t th[64];
	int started = 0;
	for (int i = 0; i < n; i++) {
		if (pthread_create(&th[i], NULL, hog, NULL) == 0) {
			started++;
			continue;
		}
		/* A process of the tree that starts its threads when the others
		 * have filled the tree is refused threads (EAGAIN, as the README
		 * says); the soft limit's barrier needs them all. */
		if (start) {
			fprintf(stderr, "pressure: pthread_create failed\n");
			exit(2);
		}
		break;
	}
	if (start) {
		sh->line = at - memory();
		pthread_barrier_wait(start);
	}
	for (int i = 0; i < n; i++)
		lists[i] = NULL;
	for (int i = 0; i < started; i++)
		pthread_join(th[i], &lists[i]);
	if (!started) /* none: this thread allocates instead */
		lists[0] = hog(NULL);
}

/* ---- soft -------------------------------------------------------------- */

static int64_t t_callback, mem_callback;

static void on_pressure(int64_t mem, int64_t threshold, void *arg)
{
	(void)mem;
	(void)threshold;
	(void)arg;
	t_callback = now_ns();
	mem_callback = memory();
	__atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
}

static int soft(int threads, int rounds)
{
	static struct shared s;
	sh = &s;
	int64_t threshold = memory() + 64 * MiB;
	if (ml_on_memory_pressure(threshold, on_pressure, NULL) != ML_OK) {
		fprintf(stderr, "pressure: ml_on_memory_pressure failed\n");
		return 2;
	}
	static pthread_barrier_t b;
	start = &b;
	for (int r = 0; r < rounds; r++) {
		void *lists[64];
		memset(&s, 0, sizeof s);
		t_callback = 0;
		pthread_barrier_init(&b, NULL, (unsigned)threads + 1);
		run_threads(threads, lists, threshold);
		pthread_barrier_destroy(&b);
		if (!t_callback) {
			fprintf(stderr, "pressure: round %d: no callback\n", r);
			return 1;
		}
		printf("soft %d %lld %lld\n", r, (long long)(mem_callback - threshold),
		       (long long)(s.t_cross ? t_callback - s.t_cross : -1));
		for (int i = 0; i < threads; i++)
			free_list(lists[i]);
	}
	return 0;
}

/* ---- tree -------------------------------------------------------------- */

static struct shared *shared_map(void)
{
	void *p = uncounted_shared(sizeof(struct shared));
	if (p == MAP_FAILED) {
		perror("pressure: mmap");
		exit(2);
	}
	return p;
}

static int tree(int procs, int threads, int64_t limit)
{
	sh = shared_map();
	int go[2], ready[2];
	if (pipe(go) || pipe(ready))
		return 2;
	pid_t pid[64];
	for (int i = 0; i < procs; i++) {
		if ((pid[i] = fork()) == 0) {
			close(go[1]); /* so that the parent's close ends them */
			close(ready[0]);
			int64_t m = memory();
			__atomic_add_fetch(&sh->line, -m, __ATOMIC_RELAXED);
			char c = 0;
			if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
				_exit(2);
			void *lists[64];
			run_threads(threads, lists, 0);
			sh->mem[i] = memory();
			if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) < 0)
				_exit(2);
			_exit(0);
		}
	}
	char c;
	for (int i = 0; i < procs; i++)
		if (read(ready[0], &c, 1) != 1)
			return 2;
	sh->mem_parent = memory();
	__atomic_add_fetch(&sh->line, limit - sh->mem_parent, __ATOMIC_RELAXED);
	for (int i = 0; i < procs; i++)
		if (write(go[1], "g", 1) != 1)
			return 2;
	for (int i = 0; i < procs; i++)
		if (read(ready[0], &c, 1) != 1)
			return 2;
	int64_t sum = sh->mem_parent;
	for (int i = 0; i < procs; i++)
		sum += sh->mem[i];
	printf("tree %lld %lld\n", (long long)(sum - limit),
	       (long long)(sh->t_cross ? sh->t_refused - sh->t_cross : -1));
	close(go[1]); /* the children's last read returns: they exit */
	for (int i = 0; i < procs; i++)
		waitpid(pid[i], NULL, 0);
	return 0;
}

/* ---- giveback ---------------------------------------------------------- */

static int giveback(int64_t limit, int rounds)
{
	size_t part = (size_t)(limit / 10 * 6);
	for (int r = 0; r < rounds; r++) {
		int kill_it = r & 1, held[2], go[2], timing[2];
		if (pipe(held) || pipe(go) || pipe(timing))
			return 2;
		/* The second child first, waiting: its start is not timed. */
		pid_t b = fork();
		if (b == 0) {
			char c;
			if (read(go[0], &c, 1) != 1)
				_exit(2);
			long attempts = 0;
			char *p;
			while (!(p = malloc(part)) && attempts < 10000000)
				attempts++;
			int64_t msg[2] = { now_ns(), attempts };
			if (!p)
				_exit(3);
			if (write(timing[1], msg, sizeof msg) != sizeof msg)
				_exit(2);
			_exit(0);
		}
		pid_t a = fork();
		if (a == 0) {
			char *p = malloc(part);
			if (!p)
				_exit(3);
			memset(p, 1, part);
			if (write(held[1], "h", 1) != 1)
				_exit(2);
			if (kill_it)
				pause();
			_exit(0);
		}
		char c;
		if (read(held[0], &c, 1) != 1) {
			fprintf(stderr, "pressure: the first child could not hold its part\n");
			return 1;
		}
		if (kill_it)
			kill(a, SIGKILL);
		waitpid(a, NULL, 0);
		int64_t t0 = now_ns();
		if (write(go[1], "g", 1) != 1)
			return 2;
		int64_t msg[2];
		if (read(timing[0], msg, sizeof msg) != sizeof msg) {
			fprintf(stderr, "pressure: the second child never got its part\n");
			return 1;
		}
		waitpid(b, NULL, 0);
		for (int i = 0; i < 2; i++) {
			close(held[i]);
			close(go[i]);
			close(timing[i]);
		}
		printf("giveback %s %lld %lld\n", kill_it ? "kill" : "exit",
		       (long long)(msg[0] - t0), (long long)msg[1]);
	}
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!ml_loaded()) {
		fprintf(stderr, "pressure: run it under the preload\n");
		return 2;
	}
	if (argc >= 2 && !strcmp(argv[1], "soft"))
		return soft((int)arg_long(argc, argv, 2, 1) % 65,
			    (int)arg_long(argc, argv, 3, 10));
	if (argc >= 2 && !strcmp(argv[1], "tree"))
		return tree((int)arg_long(argc, argv, 2, 2) % 65,
			    (int)arg_long(argc, argv, 3, 2) % 65,
			    arg_long(argc, argv, 4, 64 * MiB));
	if (argc >= 2 && !strcmp(argv[1], "giveback"))
		return giveback(arg_long(argc, argv, 2, 64 * MiB),
				(int)arg_long(argc, argv, 3, 10));
	fprintf(stderr, "usage: pressure soft THREADS ROUNDS | tree PROCS THREADS "
			"LIMIT | giveback LIMIT ROUNDS\n");
	return 2;
}
