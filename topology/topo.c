/* topo.c: the rank's share of the node's CPUs (see topo.h). */
#include "topo.h"

#include <hwloc.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

int cg_topo_partition(const int *cpus, int n, int nparts, int part, int *out, int *shared) {
  *shared = 0;
  if (n <= 0 || nparts <= 0) return 0;
  if (n < nparts) {
    out[0] = cpus[part % n];
    *shared = 1;
    return 1;
  }
  int lo = (int)((long long)n * part / nparts), hi = (int)((long long)n * (part + 1) / nparts);
  for (int i = lo; i < hi; i++) out[i - lo] = cpus[i];
  return hi - lo;
}

void cg_topo_discover(const cg_comm_t *c, cg_topo_t *t) {
  memset(t, 0, sizeof *t);
  t->numa = -1;
  hwloc_topology_t topo;
  int all[CG_TOPO_MAX_CPUS], n = 0;
  hwloc_bitmap_t set = hwloc_bitmap_alloc();
  int ok = hwloc_topology_init(&topo) == 0 && hwloc_topology_load(topo) == 0;
  if (ok && hwloc_get_cpubind(topo, set, HWLOC_CPUBIND_PROCESS) != 0) {
    cg_log_warn("hwloc could not read the process binding; assuming all CPUs are allowed");
    hwloc_bitmap_copy(set, hwloc_topology_get_allowed_cpuset(topo));
  }
  if (ok) {
    int i;
    hwloc_bitmap_foreach_begin(i, set) {
      if (n < CG_TOPO_MAX_CPUS) all[n++] = i;
    }
    hwloc_bitmap_foreach_end();
  }
  if (n == 0) all[n++] = 0;
  /* Ranks of this node that were given exactly the same CPUs divide them. */
  char *mine = NULL;
  hwloc_bitmap_asprintf(&mine, set);
  int len = (int)strlen(mine) + 1, maxlen = 0;
  CG_CHECK_MPI(MPI_Allreduce(&len, &maxlen, 1, MPI_INT, MPI_MAX, c->local));
  char *sets = cg_calloc((size_t)maxlen, (size_t)c->local_size, "cpusets");
  char *buf = cg_calloc((size_t)maxlen, 1, "cpuset");
  memcpy(buf, mine, (size_t)len);
  CG_CHECK_MPI(MPI_Allgather(buf, maxlen, MPI_CHAR, sets, maxlen, MPI_CHAR, c->local));
  int same = 0, idx = 0;
  for (int r = 0; r < c->local_size; r++) {
    if (strcmp(sets + (size_t)r * maxlen, mine) == 0) {
      if (r < c->local_rank) idx++;
      same++;
    }
  }
  t->ncpus = cg_topo_partition(all, n, same, idx, t->cpus, &t->shared);
  if (ok) {
    hwloc_obj_t pu = hwloc_get_pu_obj_by_os_index(topo, (unsigned)t->cpus[0]);
    hwloc_obj_t numa = NULL;
    if (pu) {
      hwloc_bitmap_t nodeset = hwloc_bitmap_alloc();
      hwloc_cpuset_to_nodeset(topo, pu->cpuset, nodeset);
      int first = hwloc_bitmap_first(nodeset);
      if (first >= 0) numa = hwloc_get_numanode_obj_by_os_index(topo, (unsigned)first);
      hwloc_bitmap_free(nodeset);
    }
    t->numa = numa ? (int)numa->os_index : -1;
    hwloc_topology_destroy(topo);
  }
  free(mine);
  free(sets);
  free(buf);
  hwloc_bitmap_free(set);
}
