/* example_handler.c: serve requests with an untrusted parser, safely.
 *
 * A server parses each request with code it does not trust (a third-party
 * library, say). Two limits keep one bad request from hurting the others:
 *
 *   - an allocation budget per request (ml_limit_allocations): the parser may
 *     allocate at most PARSE_BUDGET bytes for one request. Frees do not
 *     count, so this is a deterministic measure of the parser's work: the
 *     same request is refused at the same point on every run;
 *   - a global memory limit (ml_limit_global_memory): whatever the budgets
 *     say, a request is refused while the whole process heap is over
 *     HEAP_LIMIT (many concurrent requests, each within its budget).
 *
 * When a limit fires, the parser's allocations fail (malloc returns NULL,
 * and keep failing until the task returns). The parser gives up through its
 * ordinary error path, the handler reports the request as rejected with the
 * limit that fired, and serves the next request.
 *
 * Build and run (memlimits.h is installed as <memlimits.h>; in this tree it
 * is shim/memlimits.h):
 *
 *     cc -O2 example_handler.c -o example_handler -ldl
 *     LD_PRELOAD=/path/to/libmemlimits.so ./example_handler
 *
 * Exit status: 0 if exactly the malicious request was rejected. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/memlimits.h"

#define PARSE_BUDGET ((uint64_t)1 << 20)  /* bytes per request */
#define HEAP_LIMIT ((int64_t)256 << 20)   /* bytes, whole process */

/* ---- The untrusted parser ------------------------------------------------
 * Parses "name=value;name=value;...". In a value, "~Nc" stands for N copies
 * of the character c (a "compression" feature). The parser trusts N. */

struct field {
	char *name, *value;
	struct field *next;
};

struct parsed {
	struct field *fields;
	size_t nfields;
};

struct str {
	char *p;
	size_t len, cap;
};

static bool str_push(struct str *s, char c)
{
	if (s->len + 1 >= s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 16;
		char *p = realloc(s->p, cap);
		if (!p)
			return false;
		s->p = p;
		s->cap = cap;
	}
	s->p[s->len++] = c;
	s->p[s->len] = '\0';
	return true;
}

static void free_parsed(struct parsed *r)
{
	if (!r)
		return;
	while (r->fields) {
		struct field *f = r->fields;
		r->fields = f->next;
		free(f->name);
		free(f->value);
		free(f);
	}
	free(r);
}

/* Returns the fields, or NULL on a syntax error or when out of memory. */
static struct parsed *parse_request(const char *req)
{
	struct parsed *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	const char *c = req;
	while (*c) {
		struct str name = { 0 }, value = { 0 };
		while (*c && *c != '=')
			if (!str_push(&name, *c++))
				goto fail;
		if (*c++ != '=' || name.len == 0)
			goto fail;
		while (*c && *c != ';') {
			if (*c == '~') { /* ~Nc: N copies of c */
				char *end;
				unsigned long long n = strtoull(c + 1, &end, 10);
				if (end == c + 1 || !*end)
					goto fail;
				for (unsigned long long i = 0; i < n; i++)
					if (!str_push(&value, *end))
						goto fail;
				c = end + 1;
			} else if (!str_push(&value, *c++)) {
				goto fail;
			}
		}
		if (*c == ';')
			c++;
		struct field *f = malloc(sizeof *f);
		if (!f)
			goto fail;
		f->name = name.p;
		f->value = value.p ? value.p : calloc(1, 1);
		f->next = r->fields;
		r->fields = f;
		r->nfields++;
		if (!f->value)
			goto fail_fields;
		continue;
	fail:
		free(name.p);
		free(value.p);
	fail_fields:
		free_parsed(r);
		return NULL;
	}
	return r;
}

/* ---- The handler ---------------------------------------------------------- */

struct job {
	const char *request;
	struct parsed *parsed;  /* what the parser returned, or NULL */
	uint64_t allocated;     /* bytes the parser allocated */
	ml_status budget;       /* status of the allocation budget */
};

static void *parse_task(void *arg)
{
	struct job *j = arg;
	return parse_request(j->request);
}

/* Runs under the global memory limit: the parser under its budget. */
static void *budgeted_parse(void *arg)
{
	struct job *j = arg;
	void *result = NULL;
	j->budget = ml_limit_allocations(PARSE_BUDGET, parse_task, j, &result,
					 &j->allocated);
	/* Even on an interrupt, result is what the parser returned (here NULL
	 * or a partial result), so it can be freed. */
	j->parsed = result;
	return NULL;
}

/* Parses one request under both limits. Returns ML_OK, or the limit that
 * fired. */
static ml_status handle(struct job *j)
{
	ml_status heap = ml_limit_global_memory(budgeted_parse, j, NULL);
	/* If the global limit fired, both report it. If only the budget fired,
	 * the enclosing task is unaffected (ML_OK) and the budget says why. */
	return heap != ML_OK ? heap : j->budget;
}

/* ---- A day at the server ----------------------------------------------- */

struct request {
	const char *text;
	bool malicious; /* what we expect: rejected */
};

static const struct request requests[] = {
	{ "user=alice;lang=en", false },
	{ "user=bob;greeting=h~3i;lang=fr", false },
	{ "user=carol;banner=~40-", false },
	{ "user=mallory;payload=~99999999999x", true }, /* 100 GB of x */
	{ "user=dave;lang=de", false },
	{ "user=erin;note=fine~5!", false },
};

int main(void)
{
	ml_status st = ml_start();
	if (st != ML_OK && st != ML_INVALID) { /* ML_INVALID: already started */
		printf("memlimits: %s\n", ml_status_string(st));
		return 1;
	}
	ml_set_global_memory_limit(HEAP_LIMIT);

	size_t n = sizeof requests / sizeof requests[0];
	unsigned served = 0, rejected = 0, unexpected = 0;
	for (size_t i = 0; i < n; i++) {
		struct job j = { .request = requests[i].text };
		st = handle(&j);
		if (st == ML_OK && j.parsed) {
			served++;
			printf("request %zu: ok, %zu fields, %llu bytes allocated\n",
			       i + 1, j.parsed->nfields,
			       (unsigned long long)j.allocated);
		} else if (st != ML_OK) {
			rejected++;
			printf("request %zu: rejected (%s) after %llu bytes\n",
			       i + 1, ml_status_string(st),
			       (unsigned long long)j.allocated);
		} else {
			printf("request %zu: malformed\n", i + 1);
		}
		bool as_expected = requests[i].malicious
			? st == ML_ALLOCATION_LIMIT
			: st == ML_OK && j.parsed;
		if (!as_expected)
			unexpected++;
		free_parsed(j.parsed);
	}
	printf("%zu requests: %u served, %u rejected\n", n, served, rejected);
	if (unexpected) {
		printf("%u requests were not handled as expected\n", unexpected);
		return 1;
	}
	return 0;
}
