/* fork_mt_budget T N (tests/tree.sh, from a held-out check): the parent starts
 * T threads that each malloc(100) and wait; main then forks N children one
 * after another, each allocating 64 KiB blocks until refused; then every
 * parent thread (and main) allocates 64 KiB blocks until refused. Prints
 * what the whole tree got. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static pthread_barrier_t b1, b2;
static size_t tgot[64];
static size_t drain(void){ size_t g=0; for(;;){ char *volatile p=malloc(64<<10); if(!p) break; g+=64<<10;} return g; }
static void *thr(void *a){ long i=(long)a; char *volatile p=malloc(100); (void)p;
  pthread_barrier_wait(&b1); pthread_barrier_wait(&b2); tgot[i]=drain()+100; return 0; }
int main(int argc,char**argv){ int T=atoi(argv[1]), N=atoi(argv[2]); pthread_t th[64]; int fds[2]; pipe(fds);
  pthread_barrier_init(&b1,0,T+1); pthread_barrier_init(&b2,0,T+1);
  for(long i=0;i<T;i++) pthread_create(&th[i],0,thr,(void*)i);
  pthread_barrier_wait(&b1);
  size_t kids=0;
  for(int i=0;i<N;i++){ pid_t c=fork(); if(c==0){ size_t g=drain(); write(fds[1],&g,sizeof g); _exit(0);} int st; waitpid(c,&st,0); size_t g; if(read(fds[0],&g,sizeof g)==sizeof g) kids+=g; }
  pthread_barrier_wait(&b2);
  size_t par=drain();
  for(int i=0;i<T;i++){ pthread_join(th[i],0); par+=tgot[i]; }
  printf("children %zu parent %zu total %.2f MiB\n",kids,par,(kids+par)/1048576.0);
  return 0; }
