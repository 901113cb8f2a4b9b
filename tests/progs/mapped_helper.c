/* mapped_helper MODE: programs for test_mapped that must run in their own
 * process (a limit, a deadlock guard). Each prints one line saying what
 * happened and exits 0 if it ran as designed.
 *   mmap [N]  maps 1 MiB at a time (touched) up to N (300) MiB or a refusal
 *   mprotect  commits 1 MiB at a time of a PROT_NONE reservation
 *   mremap    grows one mapping by 1 MiB at a time (MREMAP_MAYMOVE)
 *   shmat     attaches System V segments of 1 MiB (touched) up to 300 MiB
 *   sbrk      grows the program break by 1 MiB at a time (touched)
 *   heap      mallocs 64 MiB in small blocks; prints mapped_bytes
 *   signal    a signal handler maps and unmaps while its thread does too
 *   forks     forks while two threads map and unmap */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shim/memlimits.h"

#define MiB ((size_t)1 << 20)
#define RW (PROT_READ | PROT_WRITE)

static long P;

static int64_t mapped(void)
{
	struct ml_stats s;
	memset(&s, 0, sizeof s);
	ml_stats(&s);
	return s.mapped_bytes;
}

static void touch(char *p, size_t n)
{
	for (size_t i = 0; i < n; i += (size_t)P)
		p[i] = 1;
}

static int grow_mmap(int n)
{
	for (int i = 0; i < n; i++) {
		char *p = mmap(NULL, MiB, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			printf("mmap: MAP_FAILED %s after %d MiB\n",
			       errno == ENOMEM ? "ENOMEM" : strerror(errno), i);
			return errno == ENOMEM ? 0 : 1;
		}
		touch(p, MiB);
	}
	printf("mmap: all %d MiB mapped\n", n);
	return 0;
}

static int grow_shmat(void)
{
	for (int i = 0; i < 300; i++) {
		int id = shmget(IPC_PRIVATE, MiB, IPC_CREAT | 0600);
		if (id < 0)
			return 2;
		char *p = shmat(id, NULL, 0);
		int e = errno;
		shmctl(id, IPC_RMID, NULL); /* gone once detached */
		if (p == (void *)-1) {
			printf("shmat: -1 %s after %d MiB\n",
			       e == ENOMEM ? "ENOMEM" : strerror(e), i);
			return e == ENOMEM ? 0 : 1;
		}
		touch(p, MiB);
	}
	printf("shmat: all 300 MiB attached\n");
	return 0;
}

static int grow_sbrk(void)
{
	for (int i = 0; i < 300; i++) {
		char *p = sbrk((intptr_t)MiB);
		if (p == (void *)-1) {
			printf("sbrk: -1 %s after %d MiB\n",
			       errno == ENOMEM ? "ENOMEM" : strerror(errno), i);
			return errno == ENOMEM ? 0 : 1;
		}
		touch(p, MiB);
	}
	printf("sbrk: all 300 MiB added\n");
	return 0;
}

static int grow_mprotect(void)
{
	char *r = mmap(NULL, 1024 * MiB, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r == MAP_FAILED)
		return 2;
	for (int i = 0; i < 300; i++) {
		if (mprotect(r + i * MiB, MiB, RW) != 0) {
			printf("mprotect: -1 %s after %d MiB\n",
			       errno == ENOMEM ? "ENOMEM" : strerror(errno), i);
			return errno == ENOMEM ? 0 : 1;
		}
		touch(r + i * MiB, MiB);
	}
	printf("mprotect: all 300 MiB committed\n");
	return 0;
}

static int grow_mremap(void)
{
	char *p = mmap(NULL, MiB, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 2;
	for (int i = 1; i < 300; i++) {
		char *q = mremap(p, i * MiB, (i + 1) * MiB, MREMAP_MAYMOVE);
		if (q == MAP_FAILED) {
			printf("mremap: MAP_FAILED %s after %d MiB\n",
			       errno == ENOMEM ? "ENOMEM" : strerror(errno), i);
			return errno == ENOMEM ? 0 : 1;
		}
		p = q;
		touch(p + i * MiB, MiB);
	}
	printf("mremap: all 300 MiB\n");
	return 0;
}

static int heap(void)
{
	enum { N = 64 * 256 };
	static void *b[N];
	for (int i = 0; i < N; i++)
		if (!(b[i] = malloc(4096 - 16 * (i % 4))))
			return 2;
	printf("heap: mapped %lld of 64 MiB\n", (long long)(mapped() / (int64_t)MiB));
	for (int i = 0; i < N; i++)
		free(b[i]);
	return 0;
}

/* ---- signal: the handler maps while its thread may hold the account's
 * lock (or be inside the engine's malloc path). A deadlock is killed by
 * the alarm. */
static volatile sig_atomic_t handled;
static volatile int stop;

static void on_usr1(int sig)
{
	(void)sig;
	int e = errno;
	char *p = mmap(NULL, (size_t)P, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p != MAP_FAILED) {
		p[0] = 1;
		munmap(p, (size_t)P);
	}
	handled++;
	errno = e;
}

static void *kicker(void *arg)
{
	pthread_t target = *(pthread_t *)arg;
	struct timespec ts = { 0, 20000 };
	while (!stop) {
		pthread_kill(target, SIGUSR1);
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static int signals(void)
{
	alarm(30);
	signal(SIGUSR1, on_usr1);
	int64_t m0 = mapped();
	pthread_t self = pthread_self(), k;
	pthread_create(&k, NULL, kicker, &self);
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	long loops = 0;
	do {
		char *p = mmap(NULL, 4 * (size_t)P, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			continue;
		mprotect(p, 2 * (size_t)P, PROT_NONE);
		free(malloc(100 + loops % 5000));
		munmap(p, 4 * (size_t)P);
		loops++;
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while (t.tv_sec - t0.tv_sec < 2);
	stop = 1;
	pthread_join(k, NULL);
	int64_t m1 = mapped();
	printf("signal: %s, %ld loops, %d handler calls, mapped %lld -> %lld\n",
	       m1 == m0 && handled > 100 ? "ok" : "FAIL", loops, (int)handled,
	       (long long)m0, (long long)m1);
	return m1 == m0 && handled > 100 ? 0 : 1;
}

/* ---- forks: the account's lock is held around fork; the child's account
 * is usable. Two threads map under a limit (so that each charge also
 * measures the heap under the engine's lock) while the main thread forks. */
static void *mapper(void *arg)
{
	(void)arg;
	while (!stop) {
		char *p = mmap(NULL, 8 * (size_t)P, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p != MAP_FAILED) {
			p[0] = 1;
			free(malloc(1000));
			munmap(p, 8 * (size_t)P);
		}
	}
	return NULL;
}

static int forks(void)
{
	alarm(60);
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, mapper, NULL);
	int bad = 0;
	for (int i = 0; i < 200; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			alarm(10); /* a deadlocked child must not outlive the test */
			int64_t m = mapped();
			char *p = mmap(NULL, 16 * (size_t)P, RW,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (p == MAP_FAILED || mapped() != m + 16 * P)
				_exit(1);
			munmap(p, 16 * (size_t)P);
			_exit(mapped() == m ? 0 : 2);
		}
		int st;
		if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 0)
			bad++;
	}
	stop = 1;
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	printf("forks: %s (%d of 200 children failed)\n", bad ? "FAIL" : "ok", bad);
	return bad != 0;
}

int main(int argc, char **argv)
{
	P = sysconf(_SC_PAGESIZE);
	setvbuf(stdout, NULL, _IONBF, 0);
	const char *m = argc > 1 ? argv[1] : "";
	if (!strcmp(m, "mmap"))
		return grow_mmap(argc > 2 ? atoi(argv[2]) : 300);
	if (!strcmp(m, "mprotect"))
		return grow_mprotect();
	if (!strcmp(m, "mremap"))
		return grow_mremap();
	if (!strcmp(m, "shmat"))
		return grow_shmat();
	if (!strcmp(m, "sbrk"))
		return grow_sbrk();
	if (!strcmp(m, "heap"))
		return heap();
	if (!strcmp(m, "signal"))
		return signals();
	if (!strcmp(m, "forks"))
		return forks();
	fprintf(stderr, "usage: mapped_helper mmap|mprotect|mremap|shmat|sbrk|heap|signal|forks\n");
	return 2;
}
