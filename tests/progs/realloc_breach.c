/* realloc_breach: a 16 MiB block grown by realloc to 32 MiB (test_meters,
 * resize_breach_line, under a 35M limit). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void){
	size_t n = 16777344; char *p = malloc(n); memset(p, 1, n);
	char *q = realloc(p, 33554560);
	printf("realloc(%zu -> 33554560) = %p\n", n, (void*)q);
	return 0;
}
