/* topo.h: where a rank runs — its GPU, the cores local to that GPU, its NUMA node, pinning.
 *
 * Two layers, as in hwloc's own tests:
 *  - a pure planner (cg_topo_plan_node / cg_topo_plan_rank) that takes any hwloc topology (the
 *    real one, a synthetic one, or an XML file with PCI devices) plus what each rank of the node
 *    wants, and decides every rank's cores. It reads no machine state, so tests drive it with
 *    fixtures (the XML files in tests/topo/) and synthetic strings;
 *  - discovery (cg_topo_create, collective over the node) that loads the real topology, reads the
 *    binding that cgroups/mpirun/Slurm gave the process, picks the GPU, exchanges the wishes
 *    with the node's other ranks and runs the planner. The handle keeps the topology for pinning.
 *
 * The plan's rules:
 *  - a rank with a GPU gets cores from (cores local to its GPU) ∩ (its allowed CPUs); the GPU's
 *    locality is the cpuset of the PCI device's first non-I/O ancestor (what
 *    hwloc_cudart_get_device_cpuset reads from sysfs on Linux); if the bus id is not in the
 *    topology, the cpuset given in the wish (from hwloc_cudart_get_device_cpuset) is used;
 *  - a rank without a GPU (or whose GPU's locality is unknown) takes the i-th NUMA node (mod the
 *    nodes its allowed CPUs touch), i counted among the ranks that have the same allowed CPUs;
 *  - ranks whose candidate cores are equal split them: contiguous runs in topology order, sizes
 *    differing by at most one, ordered by local rank; with fewer cores than ranks, cores are
 *    reused and the plan says `shared`;
 *  - one PU per core: hyperthread siblings are never handed out twice.
 *
 * Return values follow hwloc: 0 on success, -1 on failure. Pinning that cannot be done warns
 * once per call and returns -1. The job is aborted only where nothing can be planned at all:
 * cg_topo_create when hwloc cannot even load a synthetic topology of the online CPUs (and, as
 * everywhere, on an MPI error or when memory runs out). */
#ifndef CG_TOPO_H
#define CG_TOPO_H

#include <hwloc.h>
#include <stdio.h>

#include "comm.h"
#include "rank_view.h"

#define CG_TOPO_MAX_CPUS 1024
#define CG_TOPO_PCI_LEN 16   /* "dddd:bb:dd.f" and its NUL */
#define CG_TOPO_NOTE_LEN 160

/* GPU wishes for cg_topo_create. */
#define CG_TOPO_GPU_AUTO (-1) /* local rank modulo the visible devices, none if none visible */
#define CG_TOPO_GPU_NONE (-2) /* plan without a GPU (CPU backend) */

/* One rank's placement. Plain value; copy freely. */
typedef struct {
  int gpu;                        /* CUDA ordinal among the visible devices, -1 none */
  char gpu_pci[CG_TOPO_PCI_LEN];  /* "0000:3b:00.0", "" when none or unknown */
  int numa;                       /* OS index of the NUMA node of the first core, -1 unknown */
  char numa_list[32];             /* every NUMA node the cores touch, e.g. "0" or "0-1" */
  int ncpus;                      /* cores of this rank (>= 1 in a successful plan) */
  int cpus[CG_TOPO_MAX_CPUS];     /* one PU OS index per core, topology order */
  int shared;                     /* 1 if another rank of the node has one of these cores */
  char note[CG_TOPO_NOTE_LEN];    /* short remarks for humans ("no GPU; shared: ..."), "" none */
} cg_topo_plan_t;

/* What one local rank brings to the planner. Pointers are borrowed for the call. */
typedef struct {
  hwloc_const_cpuset_t allowed;    /* PUs the rank may use; NULL = the topology's allowed set */
  int gpu;                         /* CUDA ordinal, -1 none */
  const char *gpu_pci;             /* its PCI bus id ("dddd:bb:dd.f"), NULL or "" unknown */
  hwloc_const_cpuset_t gpu_cpuset; /* GPU-local PUs from another source, NULL none; used only
                                      when gpu_pci is not found in the topology */
} cg_topo_wish_t;

/* ---- the planner (pure) ---- */

/* Plans all n ranks of one node (wishes and plans indexed by local rank). topo should be loaded
 * with I/O objects (cg_topo_hwloc_load does) for GPU lookup by bus id. Returns 0, or -1 when
 * the arguments are bad or a rank has no usable CPU at all. */
int cg_topo_plan_node(hwloc_topology_t topo, const cg_topo_wish_t *wishes, int n,
                      cg_topo_plan_t *plans);
/* The plan of local rank `rank` only (plans the node internally). Returns 0 or -1. */
int cg_topo_plan_rank(hwloc_topology_t topo, const cg_topo_wish_t *wishes, int n, int rank,
                      cg_topo_plan_t *plan);

/* Part `part` of nparts of the list cpus[0..n): contiguous, sizes differing by at most one.
 * With fewer entries than parts, part p gets cpus[p % n] and *shared = 1. Returns the count. */
int cg_topo_partition(const int *cpus, int n, int nparts, int part, int *out, int *shared);

/* Loads a topology the way the planner wants it (I/O devices of interest kept): from an XML
 * file when xml is not NULL, else from a synthetic description when synthetic is not NULL, else
 * this machine. The caller destroys *topo with hwloc_topology_destroy. Returns 0 or -1. */
int cg_topo_hwloc_load(hwloc_topology_t *topo, const char *xml, const char *synthetic);

/* "rank R: host H, GPU g (pci), NUMA n, cores 0-3 (note)" into buf; returns snprintf's count. */
int cg_topo_plan_format(const cg_topo_plan_t *p, int rank, const char *host, char *buf,
                        size_t len);

/* ---- discovery, pinning, report ---- */

typedef struct cg_topo cg_topo_t; /* opaque: a loaded topology and this rank's plan */

/* Collective over c->local. gpu_wish is CG_TOPO_GPU_AUTO, CG_TOPO_GPU_NONE or an ordinal
 * (taken modulo the visible devices). Returns a handle: when hwloc cannot read the machine or
 * the binding it warns and plans over what it has (a synthetic topology of the online CPUs;
 * aborts the job only when hwloc cannot load even that). The caller owns the handle. */
cg_topo_t *cg_topo_create(const cg_comm_t *c, int gpu_wish);
/* Wraps a topology (ownership passes to the handle) and a ready plan; for tests and tools. */
cg_topo_t *cg_topo_create_from(hwloc_topology_t topo, const cg_topo_plan_t *plan);
void cg_topo_destroy(cg_topo_t *t); /* NULL is a no-op */

/* This rank's plan, owned by t. */
const cg_topo_plan_t *cg_topo_plan(const cg_topo_t *t);

/* Binds the calling thread (HWLOC_CPUBIND_THREAD) to core `index` of the plan, or to all of
 * the plan's cores when index < 0. Returns 0, or -1 after one warning line when that cannot be
 * done (index out of range, a CPU outside the allowed set, a topology that is not this machine,
 * the OS refusing). Threads created afterwards by the caller inherit the binding. */
int cg_topo_pin_thread(const cg_topo_t *t, int index);

/* How a training rank's threads share its cores (the helpers: loader.h). A rank that drives a GPU
 * keeps core 0 of its plan for the driving thread and gives the others to the helpers, one each
 * (round robin when there are more helpers than cores; core 0 when the plan has one core), so
 * its default helper count is ncpus - 1 (at least 1). On the cpu backend the compute threads use
 * every core: one helper by default, unpinned. On cores shared with other ranks nothing is
 * pinned: the OS balances oversubscribed ranks better. */
int cg_topo_helpers_default(const cg_topo_plan_t *p, int drives_gpu);
/* Each of n helpers' core into cpus[0..n): a PU OS index, or -1 = unpinned. */
void cg_topo_helper_cpus(const cg_topo_plan_t *p, int drives_gpu, int n, int *cpus);
/* Pins the calling (driving) thread to core 0 when drives_gpu and the cores are the rank's own;
 * returns 0 when there is nothing to pin, else what cg_topo_pin_thread returns. */
int cg_topo_pin_driver(const cg_topo_t *t, int drives_gpu);

/* Collective over c->world: rank 0 prints one line per rank, in rank order, to f. */
void cg_topo_report(const cg_topo_t *t, const cg_comm_t *c, FILE *f);
/* The same under a --report-ranks view (rank_view.h; auto is resolved here): all = every line;
 * nodes = the first rank's line of each node and how many more share it; top:N = the first N
 * lines (nothing is slow yet at start-up). Ends with how many lines were left out. */
void cg_topo_report_view(const cg_topo_t *t, const cg_comm_t *c, cg_rank_view_t v, FILE *f);

/* ---- CUDA runtime side (topo_cuda.c); without CUDA they report no device ---- */

/* Visible CUDA devices (CUDA_VISIBLE_DEVICES and Slurm's binding applied), 0 on any error. */
int cg_topo_cuda_count(void);
/* Device dev's PCI bus id as "dddd:bb:dd.f" (lower case). Returns 0 or -1. */
int cg_topo_cuda_pci(int dev, char *buf, size_t len);
/* Device dev's local PUs via hwloc_cudart_get_device_cpuset (needs topo to be this machine).
 * Returns 0 or -1. */
int cg_topo_cuda_cpuset(hwloc_topology_t topo, int dev, hwloc_cpuset_t set);

#endif
