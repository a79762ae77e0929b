/* topo.c: the placement planner, discovery over the node's ranks, pinning and the report
 * (see topo.h for the rules).
 *
 * The planner works on hwloc bitmaps of PU OS indexes and never touches the machine, so the
 * same code runs on the real topology and on the test fixtures. Discovery serialises each
 * rank's wish as text (cpusets as hwloc list strings) for one MPI_Allgather over the node. */
#include "topo.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

struct cg_topo {
  hwloc_topology_t topo;
  cg_topo_plan_t plan;
};

/* ---- small helpers ---- */

static void note_add(cg_topo_plan_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_add(cg_topo_plan_t *p, const char *fmt, ...) {
  size_t o = strlen(p->note);
  if (o + 3 >= sizeof p->note) return;
  if (o) {
    memcpy(p->note + o, "; ", 3);
    o += 2;
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->note + o, sizeof p->note - o, fmt, ap);
  va_end(ap);
}

/* The NUMA node a PU belongs to: the smallest node whose cpuset holds it, so CPU-less memory
 * (CXL, HBM attached above the package) never wins over the PU's own node. */
static hwloc_obj_t numa_of_pu(hwloc_topology_t topo, unsigned pu) {
  hwloc_obj_t best = NULL, n = NULL;
  while ((n = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_NUMANODE, n)) != NULL) {
    if (!n->cpuset || !hwloc_bitmap_isset(n->cpuset, pu)) continue;
    if (!best || hwloc_bitmap_weight(n->cpuset) < hwloc_bitmap_weight(best->cpuset)) best = n;
  }
  return best;
}

/* The core holding PU pu (the PU itself when the topology has no Core level). */
static hwloc_obj_t core_of_pu(hwloc_topology_t topo, unsigned pu) {
  hwloc_obj_t o = hwloc_get_pu_obj_by_os_index(topo, pu);
  if (!o) return NULL;
  hwloc_obj_t c = hwloc_get_ancestor_obj_by_type(topo, HWLOC_OBJ_CORE, o);
  return c ? c : o;
}

/* One PU per core of `set`, in topology order: the first PU of each core that set touches.
 * Writes the list to out (at most max) and the same PUs to bm. Returns the count. */
static int core_list(hwloc_topology_t topo, hwloc_const_cpuset_t set, int *out, int max,
                     hwloc_bitmap_t bm) {
  hwloc_obj_type_t type =
      hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE : HWLOC_OBJ_PU;
  hwloc_bitmap_t x = hwloc_bitmap_alloc();
  hwloc_bitmap_zero(bm);
  int n = 0;
  hwloc_obj_t o = NULL;
  while ((o = hwloc_get_next_obj_by_type(topo, type, o)) != NULL && n < max) {
    hwloc_bitmap_and(x, o->cpuset, set);
    int first = hwloc_bitmap_first(x);
    if (first < 0) continue;
    out[n++] = first;
    hwloc_bitmap_set(bm, (unsigned)first);
  }
  hwloc_bitmap_free(x);
  return n;
}

/* The cpuset local to the GPU with bus id pci, or NULL when the topology does not have it. */
static hwloc_const_cpuset_t gpu_locality(hwloc_topology_t topo, const char *pci) {
  if (!pci || !pci[0]) return NULL;
  hwloc_obj_t dev = hwloc_get_pcidev_by_busidstring(topo, pci);
  if (!dev) return NULL;
  hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(topo, dev);
  return anc && anc->cpuset && !hwloc_bitmap_iszero(anc->cpuset) ? anc->cpuset : NULL;
}

int cg_topo_partition(const int *cpus, int n, int nparts, int part, int *out, int *shared) {
  *shared = 0;
  if (n <= 0 || nparts <= 0 || part < 0 || part >= nparts) return 0;
  if (n < nparts) {
    out[0] = cpus[part % n];
    *shared = 1;
    return 1;
  }
  int lo = (int)((long long)n * part / nparts), hi = (int)((long long)n * (part + 1) / nparts);
  for (int i = lo; i < hi; i++) out[i - lo] = cpus[i];
  return hi - lo;
}

/* ---- the planner ---- */

/* Step 1 of the plan: each rank's allowed set and candidate PUs, GPU-local ∩ allowed;
 * by_numa[j] = 1 leaves rank j to the NUMA rotation. */
static void plan_candidates(hwloc_topology_t topo, const cg_topo_wish_t *wishes, int n,
                            cg_topo_plan_t *plans, hwloc_bitmap_t *allowed, hwloc_bitmap_t *cand,
                            int *by_numa) {
  hwloc_const_cpuset_t topo_allowed = hwloc_topology_get_allowed_cpuset(topo);
  for (int j = 0; j < n; j++) {
    const cg_topo_wish_t *w = &wishes[j];
    cg_topo_plan_t *p = &plans[j];
    memset(p, 0, sizeof *p);
    p->gpu = w->gpu >= 0 ? w->gpu : -1;
    p->numa = -1;
    if (p->gpu >= 0 && w->gpu_pci) snprintf(p->gpu_pci, sizeof p->gpu_pci, "%s", w->gpu_pci);
    hwloc_bitmap_copy(allowed[j], topo_allowed);
    if (w->allowed) {
      hwloc_bitmap_and(allowed[j], w->allowed, topo_allowed);
      if (hwloc_bitmap_iszero(allowed[j])) {
        hwloc_bitmap_copy(allowed[j], topo_allowed);
        note_add(p, "binding outside the topology, all CPUs assumed");
      }
    }
    if (p->gpu < 0) {
      note_add(p, "no GPU");
      by_numa[j] = 1;
      continue;
    }
    hwloc_const_cpuset_t local = gpu_locality(topo, p->gpu_pci);
    if (!local && w->gpu_cpuset && !hwloc_bitmap_iszero(w->gpu_cpuset)) local = w->gpu_cpuset;
    if (!local) {
      note_add(p, "GPU locality unknown");
      by_numa[j] = 1;
      continue;
    }
    hwloc_bitmap_and(cand[j], local, allowed[j]);
    if (hwloc_bitmap_iszero(cand[j])) {
      hwloc_bitmap_copy(cand[j], allowed[j]);
      note_add(p, "binding excludes the GPU's cores");
    }
  }
}

/* Step 2: NUMA rotation: the k-th of the ranks sharing one allowed set takes the (k mod m)-th
 * of the m NUMA nodes that set has PUs in; a PU counts for its own node only. Returns 0, or -1
 * when out of memory. */
static int plan_numa_rotation(hwloc_topology_t topo, int n, hwloc_bitmap_t *allowed,
                              hwloc_bitmap_t *cand, const int *by_numa) {
  for (int j = 0; j < n; j++) {
    if (!by_numa[j]) continue;
    int k = 0;
    for (int i = 0; i < j; i++)
      if (by_numa[i] && hwloc_bitmap_isequal(allowed[i], allowed[j])) k++;
    /* nodes (by logical index) that are some allowed PU's own node */
    int nn = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE), m = 0;
    int *home = calloc((size_t)(nn > 0 ? nn : 1), sizeof *home);
    if (!home) return -1;
    unsigned pu;
    hwloc_bitmap_foreach_begin(pu, allowed[j]) {
      hwloc_obj_t nd = numa_of_pu(topo, pu);
      if (nd && (int)nd->logical_index < nn && !home[nd->logical_index]) {
        home[nd->logical_index] = 1;
        m++;
      }
    }
    hwloc_bitmap_foreach_end();
    if (m == 0) {
      hwloc_bitmap_copy(cand[j], allowed[j]);
    } else {
      int want = k % m, seen = -1, node = -1;
      for (int x = 0; x < nn && node < 0; x++)
        if (home[x] && ++seen == want) node = x;
      hwloc_bitmap_zero(cand[j]);
      hwloc_bitmap_foreach_begin(pu, allowed[j]) {
        hwloc_obj_t nd = numa_of_pu(topo, pu);
        if (nd && (int)nd->logical_index == node) hwloc_bitmap_set(cand[j], pu);
      }
      hwloc_bitmap_foreach_end();
    }
    free(home);
  }
  return 0;
}

/* Step 3: one PU per core; ranks with equal core lists split them in local-rank order.
 * used[j] gets the full cpusets of rank j's cores. Returns 0, or -1 (errno EINVAL) when no PU
 * of a candidate set exists in the topology. */
static int plan_cores(hwloc_topology_t topo, int n, cg_topo_plan_t *plans, hwloc_bitmap_t *cand,
                      hwloc_bitmap_t *cores, hwloc_bitmap_t *used, int *list, hwloc_bitmap_t tmp) {
  for (int j = 0; j < n; j++) {
    if (core_list(topo, cand[j], list, CG_TOPO_MAX_CPUS, cores[j]) == 0) {
      /* no PU of the candidate set exists in the topology */
      errno = EINVAL;
      return -1;
    }
  }
  for (int j = 0; j < n; j++) {
    cg_topo_plan_t *p = &plans[j];
    int cnt = core_list(topo, cand[j], list, CG_TOPO_MAX_CPUS, tmp);
    int nparts = 0, part = 0, shared = 0;
    for (int i = 0; i < n; i++) {
      if (!hwloc_bitmap_isequal(cores[i], cores[j])) continue;
      if (i < j) part++;
      nparts++;
    }
    p->ncpus = cg_topo_partition(list, cnt, nparts, part, p->cpus, &shared);
    if (shared) {
      p->shared = 1;
      note_add(p, "shared: %d ranks on %d core%s", nparts, cnt, cnt == 1 ? "" : "s");
    }
    hwloc_bitmap_zero(used[j]);
    for (int c = 0; c < p->ncpus; c++) {
      hwloc_obj_t core = core_of_pu(topo, (unsigned)p->cpus[c]);
      if (core) hwloc_bitmap_or(used[j], used[j], core->cpuset);
      else hwloc_bitmap_set(used[j], (unsigned)p->cpus[c]);
    }
  }
  return 0;
}

/* Step 4: overlaps that the split did not see (different bindings, a GPU local to
 * everything), shared GPUs, and the NUMA nodes of the chosen cores. */
static void plan_overlaps(hwloc_topology_t topo, int n, cg_topo_plan_t *plans,
                          hwloc_bitmap_t *used, hwloc_bitmap_t tmp) {
  for (int j = 0; j < n; j++) {
    cg_topo_plan_t *p = &plans[j];
    for (int i = 0; i < n && !p->shared; i++) {
      if (i != j && hwloc_bitmap_intersects(used[i], used[j])) {
        p->shared = 1;
        note_add(p, "cores overlap local rank %d's", i);
      }
    }
    if (p->gpu >= 0) {
      int same = 0;
      for (int i = 0; i < n; i++) {
        const cg_topo_plan_t *q = &plans[i];
        if (q->gpu < 0) continue;
        if (p->gpu_pci[0] ? !strcmp(q->gpu_pci, p->gpu_pci) : (!q->gpu_pci[0] && q->gpu == p->gpu))
          same++;
      }
      if (same > 1) note_add(p, "GPU shared by %d ranks", same);
    }
    /* NUMA nodes of the chosen cores */
    hwloc_bitmap_zero(tmp);
    for (int c = 0; c < p->ncpus; c++) {
      hwloc_obj_t nd = numa_of_pu(topo, (unsigned)p->cpus[c]);
      if (nd) {
        hwloc_bitmap_set(tmp, nd->os_index);
        if (p->numa < 0) p->numa = (int)nd->os_index;
      }
    }
    if (hwloc_bitmap_iszero(tmp)) snprintf(p->numa_list, sizeof p->numa_list, "?");
    else hwloc_bitmap_list_snprintf(p->numa_list, sizeof p->numa_list, tmp);
  }
}

int cg_topo_plan_node(hwloc_topology_t topo, const cg_topo_wish_t *wishes, int n,
                      cg_topo_plan_t *plans) {
  if (!topo || !wishes || !plans || n <= 0) {
    errno = EINVAL;
    return -1;
  }
  hwloc_bitmap_t *allowed = calloc((size_t)n, sizeof *allowed);
  hwloc_bitmap_t *cand = calloc((size_t)n, sizeof *cand);   /* candidate PUs */
  hwloc_bitmap_t *cores = calloc((size_t)n, sizeof *cores); /* one PU per candidate core */
  hwloc_bitmap_t *used = calloc((size_t)n, sizeof *used);   /* full cpusets of the chosen cores */
  int *by_numa = calloc((size_t)n, sizeof *by_numa);
  int *list = malloc(sizeof(int) * CG_TOPO_MAX_CPUS);
  hwloc_bitmap_t tmp = hwloc_bitmap_alloc();
  int rc = -1;
  if (!allowed || !cand || !cores || !used || !by_numa || !list || !tmp) goto done;
  for (int j = 0; j < n; j++) {
    allowed[j] = hwloc_bitmap_alloc();
    cand[j] = hwloc_bitmap_alloc();
    cores[j] = hwloc_bitmap_alloc();
    used[j] = hwloc_bitmap_alloc();
    if (!allowed[j] || !cand[j] || !cores[j] || !used[j]) goto done;
  }

  /* 1. candidates; 2. NUMA rotation; 3. one PU per core, split; 4. overlaps, NUMA nodes */
  plan_candidates(topo, wishes, n, plans, allowed, cand, by_numa);
  if (plan_numa_rotation(topo, n, allowed, cand, by_numa)) goto done;
  if (plan_cores(topo, n, plans, cand, cores, used, list, tmp)) goto done;
  plan_overlaps(topo, n, plans, used, tmp);
  rc = 0;

done:
  for (int j = 0; j < n; j++) {
    if (allowed) hwloc_bitmap_free(allowed[j]);
    if (cand) hwloc_bitmap_free(cand[j]);
    if (cores) hwloc_bitmap_free(cores[j]);
    if (used) hwloc_bitmap_free(used[j]);
  }
  free(allowed);
  free(cand);
  free(cores);
  free(used);
  free(by_numa);
  free(list);
  hwloc_bitmap_free(tmp);
  return rc;
}

int cg_topo_plan_rank(hwloc_topology_t topo, const cg_topo_wish_t *wishes, int n, int rank,
                      cg_topo_plan_t *plan) {
  if (rank < 0 || rank >= n || !plan) {
    errno = EINVAL;
    return -1;
  }
  cg_topo_plan_t *all = calloc((size_t)(n > 0 ? n : 1), sizeof *all);
  if (!all) return -1;
  int rc = cg_topo_plan_node(topo, wishes, n, all);
  if (rc == 0) *plan = all[rank];
  free(all);
  return rc;
}

int cg_topo_hwloc_load(hwloc_topology_t *topo, const char *xml, const char *synthetic) {
  hwloc_topology_t t;
  *topo = NULL;
  if (hwloc_topology_init(&t) != 0) return -1;
  /* GPUs are needed for locality; caches are not. */
  hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
  hwloc_topology_set_cache_types_filter(t, HWLOC_TYPE_FILTER_KEEP_NONE);
  hwloc_topology_set_icache_types_filter(t, HWLOC_TYPE_FILTER_KEEP_NONE);
  if (xml ? hwloc_topology_set_xml(t, xml) != 0
          : (synthetic && hwloc_topology_set_synthetic(t, synthetic) != 0))
    goto fail;
  if (hwloc_topology_load(t) != 0) goto fail;
  *topo = t;
  return 0;
fail:
  hwloc_topology_destroy(t);
  return -1;
}

int cg_topo_plan_format(const cg_topo_plan_t *p, int rank, const char *host, char *buf,
                        size_t len) {
  char gpu[48] = "", cores[256] = "";
  if (p->gpu >= 0)
    snprintf(gpu, sizeof gpu, "GPU %d%s%s%s, ", p->gpu, p->gpu_pci[0] ? " (" : "", p->gpu_pci,
             p->gpu_pci[0] ? ")" : "");
  hwloc_bitmap_t set = hwloc_bitmap_alloc();
  for (int i = 0; i < p->ncpus; i++) hwloc_bitmap_set(set, (unsigned)p->cpus[i]);
  if (hwloc_bitmap_list_snprintf(cores, sizeof cores, set) >= (int)sizeof cores)
    memcpy(cores + sizeof cores - 4, "...", 4); /* keep the line readable on huge machines */
  hwloc_bitmap_free(set);
  return snprintf(buf, len, "rank %d: host %s, %sNUMA %s, cores %s%s%s%s", rank, host, gpu,
                  p->numa_list[0] ? p->numa_list : "?", cores, p->note[0] ? " (" : "", p->note,
                  p->note[0] ? ")" : "");
}

/* ---- discovery ---- */

cg_topo_t *cg_topo_create_from(hwloc_topology_t topo, const cg_topo_plan_t *plan) {
  cg_topo_t *t = cg_calloc(1, sizeof *t, "topology");
  t->topo = topo;
  if (plan) t->plan = *plan;
  return t;
}

void cg_topo_destroy(cg_topo_t *t) {
  if (!t) return;
  if (t->topo) hwloc_topology_destroy(t->topo);
  free(t);
}

const cg_topo_plan_t *cg_topo_plan(const cg_topo_t *t) { return &t->plan; }

/* "gpu|pci|allowed|gpu_cpuset", empty fields as "-". The caller frees. */
static char *wish_encode(int gpu, const char *pci, hwloc_const_cpuset_t allowed,
                         hwloc_const_cpuset_t gcs) {
  char *a = NULL, *g = NULL, *out = NULL;
  hwloc_bitmap_list_asprintf(&a, allowed);
  if (gcs) hwloc_bitmap_list_asprintf(&g, gcs);
  size_t len = 64 + (a ? strlen(a) : 1) + (g ? strlen(g) : 1) + strlen(pci);
  out = cg_malloc(len, "topology wish");
  snprintf(out, len, "%d|%s|%s|%s", gpu, pci[0] ? pci : "-", a ? a : "-", g ? g : "-");
  free(a);
  free(g);
  return out;
}

/* Parses wish_encode's text in place into w (bitmaps allocated here, pci pointing into s). */
static void wish_decode(char *s, cg_topo_wish_t *w, hwloc_bitmap_t allowed, hwloc_bitmap_t gcs) {
  char *f[4] = {s, "-", "-", "-"};
  for (int i = 1; i < 4; i++) {
    char *bar = strchr(f[i - 1], '|');
    if (!bar) break;
    *bar = '\0';
    f[i] = bar + 1;
  }
  memset(w, 0, sizeof *w);
  w->gpu = atoi(f[0]);
  w->gpu_pci = strcmp(f[1], "-") ? f[1] : NULL;
  if (strcmp(f[2], "-") && hwloc_bitmap_list_sscanf(allowed, f[2]) == 0) w->allowed = allowed;
  if (strcmp(f[3], "-") && hwloc_bitmap_list_sscanf(gcs, f[3]) == 0) w->gpu_cpuset = gcs;
}

cg_topo_t *cg_topo_create(const cg_comm_t *c, int gpu_wish) {
  hwloc_topology_t topo = NULL;
  if (cg_topo_hwloc_load(&topo, NULL, NULL) != 0) {
    long np = sysconf(_SC_NPROCESSORS_ONLN);
    char syn[32];
    snprintf(syn, sizeof syn, "pu:%ld", np > 0 ? np : 1);
    cg_log_warn("hwloc could not read this machine (%s); planning over %s without locality",
                strerror(errno), syn);
    if (cg_topo_hwloc_load(&topo, NULL, syn) != 0)
      CG_FATAL("hwloc could not load the synthetic topology '%s'", syn);
  }
  int thissystem = hwloc_topology_is_thissystem(topo);

  /* allowed = what cgroups allow ∩ the binding mpirun/Slurm gave the process */
  hwloc_bitmap_t allowed = hwloc_bitmap_dup(hwloc_topology_get_allowed_cpuset(topo));
  hwloc_bitmap_t bound = hwloc_bitmap_alloc();
  if (thissystem) {
    if (hwloc_get_cpubind(topo, bound, HWLOC_CPUBIND_PROCESS) != 0) {
      cg_log_warn("hwloc could not read the process binding (%s); assuming every allowed CPU",
                  strerror(errno));
    } else {
      hwloc_bitmap_and(bound, bound, allowed);
      if (hwloc_bitmap_iszero(bound))
        cg_log_warn("the process binding has no CPU hwloc allows; assuming every allowed CPU");
      else
        hwloc_bitmap_copy(allowed, bound);
    }
  }

  /* GPU: local rank modulo the visible devices (CUDA_VISIBLE_DEVICES and Slurm's GPU binding
   * already decide what is visible). */
  int gpu = -1;
  char pci[CG_TOPO_PCI_LEN] = "";
  hwloc_bitmap_t gcs = NULL;
  if (gpu_wish != CG_TOPO_GPU_NONE) {
    int nvis = cg_topo_cuda_count();
    if (nvis > 0) {
      gpu = (gpu_wish >= 0 ? gpu_wish : c->local_rank) % nvis;
      if (cg_topo_cuda_pci(gpu, pci, sizeof pci) != 0) pci[0] = '\0';
      gcs = hwloc_bitmap_alloc();
      if (!thissystem || cg_topo_cuda_cpuset(topo, gpu, gcs) != 0 || hwloc_bitmap_iszero(gcs)) {
        hwloc_bitmap_free(gcs);
        gcs = NULL;
      }
    }
  }

  /* exchange the wishes over the node */
  char *mine = wish_encode(gpu, pci, allowed, gcs);
  int len = (int)strlen(mine) + 1, maxlen = 0, n = c->local_size;
  CG_CHECK_MPI(MPI_Allreduce(&len, &maxlen, 1, MPI_INT, MPI_MAX, c->local));
  char *buf = cg_calloc((size_t)maxlen, 1, "topology wish");
  char *all = cg_calloc((size_t)maxlen, (size_t)n, "topology wishes");
  memcpy(buf, mine, (size_t)len);
  CG_CHECK_MPI(MPI_Allgather(buf, maxlen, MPI_CHAR, all, maxlen, MPI_CHAR, c->local));
  cg_topo_wish_t *w = cg_calloc((size_t)n, sizeof *w, "topology wishes");
  hwloc_bitmap_t *bms = cg_calloc((size_t)(2 * n), sizeof *bms, "topology wish sets");
  for (int r = 0; r < n; r++) {
    bms[2 * r] = hwloc_bitmap_alloc();
    bms[2 * r + 1] = hwloc_bitmap_alloc();
    wish_decode(all + (size_t)r * maxlen, &w[r], bms[2 * r], bms[2 * r + 1]);
  }
  cg_topo_plan_t plan;
  if (cg_topo_plan_rank(topo, w, n, c->local_rank, &plan) != 0) {
    /* Only when the binding names no PU of the topology: run where the OS puts us. */
    cg_log_warn("no usable CPU found for this rank's placement; threads stay unpinned");
    memset(&plan, 0, sizeof plan);
    plan.gpu = gpu;
    snprintf(plan.gpu_pci, sizeof plan.gpu_pci, "%s", pci);
    plan.numa = -1;
    snprintf(plan.numa_list, sizeof plan.numa_list, "?");
    plan.ncpus = 1;
    plan.cpus[0] = hwloc_bitmap_first(allowed) >= 0 ? hwloc_bitmap_first(allowed) : 0;
    plan.shared = 1;
    note_add(&plan, "placement failed");
  }
  const char *slurm = getenv("SLURM_LOCALID");
  if (slurm && slurm[0] && atoi(slurm) != c->local_rank)
    note_add(&plan, "SLURM_LOCALID %s, MPI local rank %d used", slurm, c->local_rank);

  for (int i = 0; i < 2 * n; i++) hwloc_bitmap_free(bms[i]);
  free(bms);
  free(w);
  free(all);
  free(buf);
  free(mine);
  hwloc_bitmap_free(gcs);
  hwloc_bitmap_free(bound);
  hwloc_bitmap_free(allowed);
  return cg_topo_create_from(topo, &plan);
}

/* ---- pinning and the report ---- */

int cg_topo_pin_thread(const cg_topo_t *t, int index) {
  const cg_topo_plan_t *p = &t->plan;
  if (index >= p->ncpus || p->ncpus <= 0) {
    cg_log_warn("cannot pin thread to core %d: this rank has %d core(s); it runs unpinned", index,
                p->ncpus);
    return -1;
  }
  hwloc_bitmap_t set = hwloc_bitmap_alloc();
  if (index < 0)
    for (int i = 0; i < p->ncpus; i++) hwloc_bitmap_set(set, (unsigned)p->cpus[i]);
  else
    hwloc_bitmap_only(set, (unsigned)p->cpus[index]);
  const char *why = NULL;
  if (!hwloc_topology_is_thissystem(t->topo))
    why = "the topology is not this machine's";
  else if (!hwloc_bitmap_isincluded(set, hwloc_topology_get_allowed_cpuset(t->topo)))
    why = "not among the allowed CPUs";
  else if (hwloc_set_cpubind(t->topo, set, HWLOC_CPUBIND_THREAD) != 0)
    why = strerror(errno);
  if (why) {
    char cpus[128];
    hwloc_bitmap_list_snprintf(cpus, sizeof cpus, set);
    cg_log_warn("could not pin thread to CPU %s: %s; it runs unpinned", cpus, why);
  }
  hwloc_bitmap_free(set);
  return why ? -1 : 0;
}

int cg_topo_helpers_default(const cg_topo_plan_t *p, int drives_gpu) {
  return drives_gpu && p->ncpus > 1 ? p->ncpus - 1 : 1;
}

void cg_topo_helper_cpus(const cg_topo_plan_t *p, int drives_gpu, int n, int *cpus) {
  for (int i = 0; i < n; i++)
    cpus[i] = !drives_gpu || p->shared ? -1
              : p->ncpus > 1           ? p->cpus[1 + i % (p->ncpus - 1)]
                                       : p->cpus[0];
}

int cg_topo_pin_driver(const cg_topo_t *t, int drives_gpu) {
  return drives_gpu && !t->plan.shared ? cg_topo_pin_thread(t, 0) : 0;
}

void cg_topo_report(const cg_topo_t *t, const cg_comm_t *c, FILE *f) {
  cg_topo_report_view(t, c, (cg_rank_view_t){CG_VIEW_ALL, 0}, f);
}

/* Whether rank 0 prints rank r's line under view v (nodes: the first rank seen on its node). */
static int view_shows(cg_rank_view_t v, int r, const int *node, const char *seen) {
  if (v.mode == CG_VIEW_NODES) return !seen[node[r]];
  if (v.mode == CG_VIEW_TOP) return r < v.top;
  return 1;
}

void cg_topo_report_view(const cg_topo_t *t, const cg_comm_t *c, cg_rank_view_t v, FILE *f) {
  struct {
    char line[512];
    int node;
  } mine, *all = NULL;
  memset(&mine, 0, sizeof mine);
  char host[sizeof c->host + 48]; /* the host, and where this rank stands among its ranks there */
  snprintf(host, sizeof host, "%s, local rank %d of %d", c->host, c->local_rank, c->local_size);
  cg_topo_plan_format(&t->plan, c->rank, host, mine.line, sizeof mine.line);
  mine.node = c->node;
  if (c->rank == 0) all = cg_calloc((size_t)c->size, sizeof mine, "topology lines");
  CG_CHECK_MPI(MPI_Gather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, 0,
                          c->world));
  if (c->rank != 0) return;
  v = cg_rank_view_resolve(v, c->size, c->nnodes);
  int *node = cg_malloc(sizeof(int) * (size_t)c->size, "topology nodes");
  char *seen = cg_calloc((size_t)c->size, 1, "topology seen");
  int *count = cg_calloc((size_t)c->size, sizeof(int), "topology counts");
  for (int r = 0; r < c->size; r++) {
    node[r] = all[r].node >= 0 && all[r].node < c->size ? all[r].node : 0;
    count[node[r]]++;
  }
  int hidden = 0;
  for (int r = 0; r < c->size; r++) {
    if (view_shows(v, r, node, seen)) {
      if (v.mode == CG_VIEW_NODES && !seen[node[r]] && count[node[r]] > 1)
        fprintf(f, "%s (+%d more rank(s) on this node)\n", all[r].line, count[node[r]] - 1);
      else
        fprintf(f, "%s\n", all[r].line);
    } else {
      hidden++;
    }
    seen[node[r]] = 1;
  }
  if (hidden)
    fprintf(f, "(%d more binding line(s) not shown: --report-ranks all or info --topology shows "
               "every rank)\n", hidden);
  fflush(f);
  free(count);
  free(seen);
  free(node);
  free(all);
}
