/* topo.h: where a rank runs — the cores it may use for compute and helper threads.
 *
 * The rank's allowed CPUs come from hwloc (its current binding, which reflects cgroups and a
 * binding made by mpirun or Slurm). When several ranks of a node were given the same CPUs
 * (e.g. mpirun --bind-to none), the set is divided among them by local rank so no two ranks'
 * threads land on one core; cg_topo_partition is that division, kept free of hwloc so tests can
 * drive it with made-up CPU lists. */
#ifndef CG_TOPO_H
#define CG_TOPO_H

#include "comm.h"

#define CG_TOPO_MAX_CPUS 1024

typedef struct {
  int ncpus;                    /* CPUs of this rank's share */
  int cpus[CG_TOPO_MAX_CPUS];   /* logical CPU (OS index) of each */
  int shared;                   /* 1 if the share overlaps another rank's (fewer cores than ranks) */
  int numa;                     /* NUMA node of the first CPU, -1 unknown */
} cg_topo_t;

/* Part `part` of nparts of the CPU list cpus[0..n): contiguous, sizes differing by at most one.
 * With fewer CPUs than parts, part p gets cpus[p % n] (shared). Returns the count written. */
int cg_topo_partition(const int *cpus, int n, int nparts, int part, int *out, int *shared);

/* Fills t for this rank (collective over c->local). Warns, never fails, when hwloc cannot read
 * the binding: then every CPU the OS reports is assumed allowed. */
void cg_topo_discover(const cg_comm_t *c, cg_topo_t *t);

#endif
