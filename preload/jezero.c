/* jezero.c: how jemalloc zeroes a recycled extent for a zeroed request.
 *
 * Its default, ehooks_default_zero_impl, gives the pages back to the
 * system (MADV_DONTNEED) and lets them fault in again as zero pages. A
 * recycled extent is dirty, so its pages are resident: for a small one
 * that trade is all cost. Every new thread allocates its cache-bin array
 * zeroed (about 60 KiB) at its first allocation, and a thread started
 * where another exited gets the dead thread's array back: 14 page faults
 * a thread (leakexit in make bench: 27.6k faults against glibc's 1k for
 * 2,000 threads), and the same for every calloc served from a freed
 * block. Up to ZERO_BY_MEMSET bytes are zeroed by memset; larger extents
 * the way jemalloc does, so that a big calloc the program leaves mostly
 * untouched does not stay resident.
 *
 * The archive's definition is made weak when it is copied (Makefile:
 * objcopy --weaken-symbol), so the link takes this one; extent.c calls it
 * through the symbol. Names and the thp check are jemalloc 5.3's. */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#define ZERO_BY_MEMSET ((size_t)256 << 10)

extern bool je_pages_purge_forced(void *addr, size_t size);
extern int je_opt_thp; /* thp_mode_t: 1 is thp_mode_always */

void je_ehooks_default_zero_impl(void *addr, size_t size);
void je_ehooks_default_zero_impl(void *addr, size_t size)
{
	/* jemalloc's rule: with transparent huge pages always on, purging
	 * would split a huge page, so it always writes. */
	if (size <= ZERO_BY_MEMSET || je_opt_thp == 1 ||
	    je_pages_purge_forced(addr, size))
		memset(addr, 0, size);
}
