/* test_topo.c: the placement planner (topology/topo.h) on machines that are not this one.
 *
 * Topologies come from hwloc synthetic strings and from the XML fixtures in tests/topo/
 * (hand-made, hwloc v2 format, loaded with I/O kept so the GPUs' PCI devices are found):
 *   2numa_8core_4gpu.xml      2 packages x (NUMA node, 8 cores x 1 PU); GPUs 0000:17:00.0 and
 *                             0000:31:00.0 on package 0, 0000:b1:00.0 and 0000:ca:00.0 on
 *                             package 1; a NIC 0000:18:00.0 on package 0.
 *   2numa_4core_smt2_3gpu.xml 2 packages x 4 cores x 2 hyperthreads, Linux numbering (PU i and
 *                             i+8 are siblings; package 1 holds PUs 4-7,12-15); GPU 0000:3b:00.0
 *                             on package 0, 0000:af:00.0 on package 1, 0000:d8:00.0 attached to
 *                             the machine (local to every core).
 * They were written by a small Python script emitting lstopo's XML layout (Machine/Package/
 * NUMANode/Core/PU, HostBridge > PCIDev class 0302 > CoProc "cudaN"); `lstopo -i FILE
 * --whole-io` shows them. hwloc's minimal XML parser takes no comments, so the description
 * lives here.
 *
 * Every plan is checked for: cores inside the rank's expected set, one PU per core, no core
 * given to two ranks unless `shared` says so, and (where the ranks fill a set) coverage.
 * Pinning is checked for a warning + -1 (never a crash) when it cannot be done. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "topo.h"

#ifndef CG_TOPO_FIXTURES
#define CG_TOPO_FIXTURES "tests/topo"
#endif

#define MAXR 16

static hwloc_topology_t load_xml(const char *name) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", CG_TOPO_FIXTURES, name);
  hwloc_topology_t t = NULL;
  if (cg_topo_hwloc_load(&t, path, NULL) != 0) {
    printf("FAIL cannot load fixture %s\n", path);
    exit(1);
  }
  return t;
}

static hwloc_topology_t load_syn(const char *desc) {
  hwloc_topology_t t = NULL;
  if (cg_topo_hwloc_load(&t, NULL, desc) != 0) {
    printf("FAIL cannot load synthetic '%s'\n", desc);
    exit(1);
  }
  return t;
}

static hwloc_bitmap_t list(const char *s) {
  hwloc_bitmap_t b = hwloc_bitmap_alloc();
  hwloc_bitmap_list_sscanf(b, s);
  return b;
}

/* The plan's PUs as a bitmap. */
static hwloc_bitmap_t plan_set(const cg_topo_plan_t *p) {
  hwloc_bitmap_t b = hwloc_bitmap_alloc();
  for (int i = 0; i < p->ncpus; i++) hwloc_bitmap_set(b, (unsigned)p->cpus[i]);
  return b;
}

/* The cores (full cpusets) of the plan's PUs. */
static hwloc_bitmap_t plan_cores(hwloc_topology_t topo, const cg_topo_plan_t *p) {
  hwloc_bitmap_t b = hwloc_bitmap_alloc();
  for (int i = 0; i < p->ncpus; i++) {
    hwloc_obj_t pu = hwloc_get_pu_obj_by_os_index(topo, (unsigned)p->cpus[i]);
    hwloc_obj_t core = pu ? hwloc_get_ancestor_obj_by_type(topo, HWLOC_OBJ_CORE, pu) : NULL;
    if (core) hwloc_bitmap_or(b, b, core->cpuset);
    else hwloc_bitmap_set(b, (unsigned)p->cpus[i]);
  }
  return b;
}

/* Common checks over a node's plans. expect[j] (list string) bounds rank j's PUs; cover (list
 * string, NULL = skip) must equal the union of all plans; per = expected cores per rank (0 =
 * skip). Two ranks may have a core in common only when both plans say `shared`. */
static void check_plans(const char *what, hwloc_topology_t topo, const cg_topo_plan_t *plans,
                        int n, const char *const *expect, const char *cover, int per) {
  hwloc_bitmap_t uni = hwloc_bitmap_alloc();
  for (int j = 0; j < n; j++) {
    const cg_topo_plan_t *p = &plans[j];
    CG_TEST_CHECK(p->ncpus >= 1, "%s: rank %d has %d cores", what, j, p->ncpus);
    if (per)
      CG_TEST_CHECK(p->ncpus == per, "%s: rank %d has %d cores, want %d", what, j, p->ncpus,
                    per);
    hwloc_bitmap_t s = plan_set(p), cs = plan_cores(topo, p);
    /* one PU per core: as many cores as PUs */
    int ncores = 0;
    hwloc_obj_t core = NULL;
    while ((core = hwloc_get_next_obj_covering_cpuset_by_type(topo, s, HWLOC_OBJ_CORE, core)))
      ncores++;
    if (hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE) > 0)
      CG_TEST_CHECK(ncores == p->ncpus, "%s: rank %d: %d PUs on %d cores", what, j, p->ncpus,
                    ncores);
    if (expect && expect[j]) {
      hwloc_bitmap_t e = list(expect[j]);
      CG_TEST_CHECK(hwloc_bitmap_isincluded(s, e), "%s: rank %d cores outside %s", what, j,
                    expect[j]);
      hwloc_bitmap_free(e);
    }
    for (int i = 0; i < j; i++) {
      hwloc_bitmap_t ci = plan_cores(topo, &plans[i]);
      if (hwloc_bitmap_intersects(ci, cs))
        CG_TEST_CHECK(plans[i].shared && p->shared, "%s: ranks %d and %d overlap, not flagged",
                      what, i, j);
      hwloc_bitmap_free(ci);
    }
    hwloc_bitmap_or(uni, uni, s);
    hwloc_bitmap_free(s);
    hwloc_bitmap_free(cs);
  }
  if (cover) {
    hwloc_bitmap_t c = list(cover);
    char got[256];
    hwloc_bitmap_list_snprintf(got, sizeof got, uni);
    CG_TEST_CHECK(hwloc_bitmap_isequal(uni, c), "%s: ranks cover %s, want %s", what, got, cover);
    hwloc_bitmap_free(c);
  }
  hwloc_bitmap_free(uni);
}

static void print_plans(const char *what, const cg_topo_plan_t *plans, int n) {
  printf("# %s\n", what);
  for (int j = 0; j < n; j++) {
    char line[512];
    cg_topo_plan_format(&plans[j], j, "fixture", line, sizeof line);
    printf("#   %s\n", line);
  }
}

static const char *gpu_bus_a[4] = {"0000:17:00.0", "0000:31:00.0", "0000:b1:00.0", "0000:ca:00.0"};

/* (a) 2 NUMA x 8 cores, 4 GPUs 2 per node: 4 ranks -> 4 cores each of the GPU's node; 8 ranks
 * (2 per GPU) -> 2 cores each. */
static void test_gpu_node(void) {
  hwloc_topology_t topo = load_xml("2numa_8core_4gpu.xml");
  for (int n = 4; n <= 8; n += 4) {
    cg_topo_wish_t w[MAXR];
    cg_topo_plan_t p[MAXR];
    const char *expect[MAXR];
    memset(w, 0, sizeof w);
    for (int j = 0; j < n; j++) {
      w[j].gpu = j % 4;
      w[j].gpu_pci = gpu_bus_a[j % 4];
      expect[j] = j % 4 < 2 ? "0-7" : "8-15";
    }
    char what[64];
    snprintf(what, sizeof what, "2numa_8core_4gpu, %d ranks", n);
    CG_TEST_CHECK(cg_topo_plan_node(topo, w, n, p) == 0, "%s: plan failed", what);
    print_plans(what, p, n);
    check_plans(what, topo, p, n, expect, "0-15", 16 / n);
    for (int j = 0; j < n; j++) {
      CG_TEST_CHECK(!p[j].shared, "%s: rank %d shared", what, j);
      CG_TEST_CHECK(p[j].gpu == j % 4 && !strcmp(p[j].gpu_pci, gpu_bus_a[j % 4]),
                    "%s: rank %d GPU %d %s", what, j, p[j].gpu, p[j].gpu_pci);
      CG_TEST_CHECK(p[j].numa == (j % 4 < 2 ? 0 : 1), "%s: rank %d NUMA %d", what, j, p[j].numa);
      CG_TEST_CHECK((n == 8) == (strstr(p[j].note, "GPU shared by 2 ranks") != NULL),
                    "%s: rank %d note '%s'", what, j, p[j].note);
    }
    if (n == 4) {
      /* contiguous, in local-rank order */
      CG_TEST_CHECK(p[0].cpus[0] == 0 && p[1].cpus[0] == 4 && p[2].cpus[0] == 8 &&
                        p[3].cpus[0] == 12,
                    "4 ranks: first cores %d %d %d %d", p[0].cpus[0], p[1].cpus[0], p[2].cpus[0],
                    p[3].cpus[0]);
      char line[512];
      cg_topo_plan_format(&p[1], 3, "node07", line, sizeof line);
      CG_TEST_CHECK(!strcmp(line, "rank 3: host node07, GPU 1 (0000:31:00.0), NUMA 0, cores 4-7"),
                    "report line '%s'", line);
    } else {
      /* ranks 0,1,4,5 share package 0 in local-rank order: 0-1, 2-3, 4-5, 6-7 */
      CG_TEST_CHECK(p[0].cpus[0] == 0 && p[1].cpus[0] == 2 && p[4].cpus[0] == 4 &&
                        p[5].cpus[0] == 6,
                    "8 ranks: order %d %d %d %d", p[0].cpus[0], p[1].cpus[0], p[4].cpus[0],
                    p[5].cpus[0]);
    }
    /* the single-rank entry point agrees with the node plan */
    cg_topo_plan_t one;
    CG_TEST_CHECK(cg_topo_plan_rank(topo, w, n, n - 1, &one) == 0 &&
                      one.ncpus == p[n - 1].ncpus && one.cpus[0] == p[n - 1].cpus[0],
                  "%s: plan_rank differs", what);
  }

  /* GPU locality from the wish's cpuset when the bus id is unknown (the cudart source), and
   * a GPU with neither -> NUMA rotation with a note. */
  {
    cg_topo_wish_t w[2];
    cg_topo_plan_t p[2];
    memset(w, 0, sizeof w);
    hwloc_bitmap_t local = list("8-15");
    w[0].gpu = 0;
    w[0].gpu_pci = "0000:99:00.0";
    w[0].gpu_cpuset = local;
    w[1].gpu = 1;
    w[1].gpu_pci = "0000:98:00.0";
    CG_TEST_CHECK(cg_topo_plan_node(topo, w, 2, p) == 0, "unknown bus ids: plan failed");
    print_plans("unknown bus ids", p, 2);
    const char *expect[2] = {"8-15", "0-7"};
    check_plans("unknown bus ids", topo, p, 2, expect, NULL, 8);
    CG_TEST_CHECK(strstr(p[1].note, "GPU locality unknown") != NULL, "note '%s'", p[1].note);
    hwloc_bitmap_free(local);
  }

  /* (d) an allowed cpuset (cgroup / mpirun binding) restricting part of a NUMA node: two GPU
   * ranks on package 0 limited to PUs 0-5 get 3 cores each; no-GPU ranks with 2-6,8-9. */
  {
    cg_topo_wish_t w[2];
    cg_topo_plan_t p[2];
    memset(w, 0, sizeof w);
    hwloc_bitmap_t allowed = list("0-5");
    for (int j = 0; j < 2; j++) {
      w[j].gpu = j;
      w[j].gpu_pci = gpu_bus_a[j];
      w[j].allowed = allowed;
    }
    CG_TEST_CHECK(cg_topo_plan_node(topo, w, 2, p) == 0, "allowed 0-5: plan failed");
    print_plans("GPU ranks, allowed 0-5", p, 2);
    const char *expect[2] = {"0-2", "3-5"};
    check_plans("allowed 0-5", topo, p, 2, expect, "0-5", 3);

    hwloc_bitmap_t a2 = list("2-6,8-9");
    for (int j = 0; j < 2; j++) {
      w[j].gpu = -1;
      w[j].gpu_pci = NULL;
      w[j].allowed = a2;
    }
    CG_TEST_CHECK(cg_topo_plan_node(topo, w, 2, p) == 0, "allowed 2-6,8-9: plan failed");
    print_plans("no GPU, allowed 2-6,8-9", p, 2);
    const char *expect2[2] = {"2-6", "8-9"};
    check_plans("allowed 2-6,8-9", topo, p, 2, expect2, "2-6,8-9", 0);
    CG_TEST_CHECK(p[0].numa == 0 && p[1].numa == 1, "NUMA %d %d", p[0].numa, p[1].numa);

    /* the GPU's cores are all outside the binding: the binding wins, with a note */
    w[0].gpu = 2;
    w[0].gpu_pci = gpu_bus_a[2];
    w[0].allowed = allowed; /* 0-5, GPU 2 is on 8-15 */
    CG_TEST_CHECK(cg_topo_plan_node(topo, w, 1, p) == 0, "remote GPU: plan failed");
    const char *expect3[1] = {"0-5"};
    check_plans("remote GPU", topo, p, 1, expect3, "0-5", 6);
    CG_TEST_CHECK(strstr(p[0].note, "binding excludes") != NULL, "note '%s'", p[0].note);

    /* bound one core per rank (mpirun --bind-to core): each keeps its core, nothing shared */
    cg_topo_wish_t wc[4];
    cg_topo_plan_t pc[4];
    hwloc_bitmap_t one[4];
    memset(wc, 0, sizeof wc);
    const char *ecore[4] = {"0", "1", "2", "3"};
    for (int j = 0; j < 4; j++) {
      one[j] = list(ecore[j]);
      wc[j].gpu = -1;
      wc[j].allowed = one[j];
    }
    CG_TEST_CHECK(cg_topo_plan_node(topo, wc, 4, pc) == 0, "bind-to-core: plan failed");
    check_plans("bind-to-core", topo, pc, 4, ecore, "0-3", 1);
    for (int j = 0; j < 4; j++) {
      CG_TEST_CHECK(!pc[j].shared, "bind-to-core: rank %d shared", j);
      hwloc_bitmap_free(one[j]);
    }
    hwloc_bitmap_free(a2);
    hwloc_bitmap_free(allowed);
  }
  hwloc_topology_destroy(topo);
}

/* (b) one NUMA node, 16 cores, 8 ranks, no GPU -> 2 cores each, disjoint, covering; and the
 * NUMA rotation on 2 nodes with an odd rank count. */
static void test_no_gpu(void) {
  hwloc_topology_t topo = load_syn("pack:1 numa:1 core:16 pu:1");
  cg_topo_wish_t w[MAXR];
  cg_topo_plan_t p[MAXR];
  memset(w, 0, sizeof w);
  for (int j = 0; j < 8; j++) w[j].gpu = -1;
  CG_TEST_CHECK(cg_topo_plan_node(topo, w, 8, p) == 0, "16 cores 8 ranks: plan failed");
  print_plans("1 NUMA x 16 cores, 8 ranks, no GPU", p, 8);
  check_plans("16 cores 8 ranks", topo, p, 8, NULL, "0-15", 2);
  for (int j = 0; j < 8; j++) {
    CG_TEST_CHECK(!p[j].shared && p[j].cpus[0] == 2 * j, "rank %d: first %d shared %d", j,
                  p[j].cpus[0], p[j].shared);
    CG_TEST_CHECK(p[j].gpu == -1 && strstr(p[j].note, "no GPU"), "rank %d note '%s'", j,
                  p[j].note);
  }
  char line[512];
  cg_topo_plan_format(&p[1], 1, "laptop", line, sizeof line);
  CG_TEST_CHECK(!strcmp(line, "rank 1: host laptop, NUMA 0, cores 2-3 (no GPU)"), "line '%s'",
                line);
  hwloc_topology_destroy(topo);

  /* 16 cores x 15 ranks: sizes differ by at most one */
  topo = load_syn("pack:1 numa:1 core:16 pu:1");
  for (int j = 0; j < 15; j++) w[j].gpu = -1;
  CG_TEST_CHECK(cg_topo_plan_node(topo, w, 15, p) == 0, "16 cores 15 ranks: plan failed");
  check_plans("16 cores 15 ranks", topo, p, 15, NULL, "0-15", 0);
  for (int j = 0; j < 15; j++)
    CG_TEST_CHECK(p[j].ncpus == 1 || p[j].ncpus == 2, "15 ranks: rank %d has %d", j, p[j].ncpus);
  hwloc_topology_destroy(topo);

  /* 2 NUMA nodes, 3 ranks: ranks 0 and 2 split node 0, rank 1 has node 1 */
  topo = load_syn("pack:2 numa:1 core:8 pu:1");
  for (int j = 0; j < 3; j++) w[j].gpu = -1;
  CG_TEST_CHECK(cg_topo_plan_node(topo, w, 3, p) == 0, "2 NUMA 3 ranks: plan failed");
  print_plans("2 NUMA x 8 cores, 3 ranks, no GPU", p, 3);
  const char *expect[3] = {"0-7", "8-15", "0-7"};
  check_plans("2 NUMA 3 ranks", topo, p, 3, expect, "0-15", 0);
  CG_TEST_CHECK(p[0].ncpus == 4 && p[1].ncpus == 8 && p[2].ncpus == 4, "sizes %d %d %d",
                p[0].ncpus, p[1].ncpus, p[2].ncpus);
  hwloc_topology_destroy(topo);
}

/* (c) fewer cores than ranks: flagged shared, every rank still has a core. */
static void test_fewer_cores(void) {
  hwloc_topology_t topo = load_syn("pack:1 numa:1 core:2 pu:1");
  cg_topo_wish_t w[5];
  cg_topo_plan_t p[5];
  memset(w, 0, sizeof w);
  for (int j = 0; j < 5; j++) w[j].gpu = -1;
  CG_TEST_CHECK(cg_topo_plan_node(topo, w, 5, p) == 0, "2 cores 5 ranks: plan failed");
  print_plans("2 cores, 5 ranks", p, 5);
  check_plans("2 cores 5 ranks", topo, p, 5, NULL, "0-1", 1);
  for (int j = 0; j < 5; j++)
    CG_TEST_CHECK(p[j].shared && strstr(p[j].note, "shared: 5 ranks on 2 cores"),
                  "rank %d: shared %d note '%s'", j, p[j].shared, p[j].note);
  hwloc_topology_destroy(topo);

  /* one core with 2 hyperthreads and 2 ranks: the sibling is not handed out as a second core */
  topo = load_syn("pack:1 numa:1 core:1 pu:2");
  CG_TEST_CHECK(cg_topo_plan_node(topo, w, 2, p) == 0, "1 core 2 ranks: plan failed");
  check_plans("1 core smt2 2 ranks", topo, p, 2, NULL, "0", 1);
  CG_TEST_CHECK(p[0].shared && p[1].shared, "1 core 2 ranks: not shared");
  hwloc_topology_destroy(topo);

  /* bad arguments fail, not crash */
  CG_TEST_CHECK(cg_topo_plan_node(NULL, w, 1, p) == -1, "NULL topology accepted");
  topo = load_syn("pu:4");
  CG_TEST_CHECK(cg_topo_plan_node(topo, w, 0, p) == -1, "0 ranks accepted");
  CG_TEST_CHECK(cg_topo_plan_rank(topo, w, 2, 2, p) == -1, "rank out of range accepted");
  /* a topology without Core objects: PUs count as cores */
  CG_TEST_CHECK(cg_topo_plan_node(topo, w, 2, p) == 0, "pu:4: plan failed");
  check_plans("pu:4 2 ranks", topo, p, 2, NULL, "0-3", 2);
  hwloc_topology_destroy(topo);
  hwloc_topology_t none = NULL;
  CG_TEST_CHECK(cg_topo_hwloc_load(&none, CG_TOPO_FIXTURES "/missing.xml", NULL) == -1 && !none,
                "missing XML loaded");

  int out[4], shared = 0;
  const int cpus[3] = {5, 6, 7};
  CG_TEST_CHECK(cg_topo_partition(cpus, 3, 2, 1, out, &shared) == 2 && out[0] == 6 && !shared,
                "partition 3/2 part 1");
  CG_TEST_CHECK(cg_topo_partition(cpus, 3, 4, 3, out, &shared) == 1 && out[0] == 5 && shared,
                "partition 3/4 part 3");
}

/* (e) hyperthreads: one PU per core, Linux-style sibling numbering, with GPUs. */
static void test_smt(void) {
  hwloc_topology_t topo =
      load_syn("pack:2 numa:1 core:4 pu:2(indexes=0,8,1,9,2,10,3,11,4,12,5,13,6,14,7,15)");
  cg_topo_wish_t w[4];
  cg_topo_plan_t p[4];
  memset(w, 0, sizeof w);
  for (int j = 0; j < 4; j++) w[j].gpu = -1;
  CG_TEST_CHECK(cg_topo_plan_node(topo, w, 4, p) == 0, "smt synthetic: plan failed");
  print_plans("2 NUMA x 4 cores x 2 PUs, 4 ranks, no GPU", p, 4);
  const char *expect[4] = {"0-3", "4-7", "0-3", "4-7"};
  check_plans("smt synthetic", topo, p, 4, expect, "0-7", 2);
  hwloc_topology_destroy(topo);

  topo = load_xml("2numa_4core_smt2_3gpu.xml");
  const char *bus[3] = {"0000:3b:00.0", "0000:af:00.0", "0000:d8:00.0"};
  for (int j = 0; j < 2; j++) {
    w[j].gpu = j;
    w[j].gpu_pci = bus[j];
  }
  CG_TEST_CHECK(cg_topo_plan_node(topo, w, 2, p) == 0, "smt xml: plan failed");
  print_plans("smt2 XML, 2 ranks on GPUs 0,1", p, 2);
  const char *e2[2] = {"0-3", "4-7"};
  check_plans("smt xml 2 ranks", topo, p, 2, e2, "0-7", 4);

  /* 4 ranks on GPU r % 3: GPU 2 hangs off the machine, so rank 2's cores overlap everyone's
   * and all four say so; ranks 0 and 3 still split package 0. */
  for (int j = 0; j < 4; j++) {
    w[j].gpu = j % 3;
    w[j].gpu_pci = bus[j % 3];
  }
  CG_TEST_CHECK(cg_topo_plan_node(topo, w, 4, p) == 0, "smt xml 4: plan failed");
  print_plans("smt2 XML, 4 ranks on GPUs 0,1,2,0", p, 4);
  const char *e4[4] = {"0-3", "4-7", "0-7", "0-3"};
  check_plans("smt xml 4 ranks", topo, p, 4, e4, "0-7", 0);
  CG_TEST_CHECK(p[0].ncpus == 2 && p[3].ncpus == 2 && p[1].ncpus == 4 && p[2].ncpus == 8,
                "sizes %d %d %d %d", p[0].ncpus, p[1].ncpus, p[2].ncpus, p[3].ncpus);
  for (int j = 0; j < 4; j++) CG_TEST_CHECK(p[j].shared, "rank %d overlap not flagged", j);
  CG_TEST_CHECK(!strcmp(p[2].numa_list, "0-1"), "rank 2 NUMA list '%s'", p[2].numa_list);
  hwloc_topology_destroy(topo);
}

/* Runs fn with stderr sent to a file; returns the number of lines it printed there. */
static int stderr_lines(int (*fn)(const cg_topo_t *, int), const cg_topo_t *t, int idx, int *rc) {
  char path[] = "/tmp/cg_test_topo_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return -1;
  fflush(stderr);
  int saved = dup(2);
  dup2(fd, 2);
  *rc = fn(t, idx);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  int lines = 0;
  char buf[4096];
  ssize_t got;
  lseek(fd, 0, SEEK_SET);
  while ((got = read(fd, buf, sizeof buf)) > 0)
    for (ssize_t i = 0; i < got; i++) lines += buf[i] == '\n';
  close(fd);
  unlink(path);
  return lines;
}

/* (f) pinning: impossible requests warn once and return -1. */
static void test_pin(void) {
  /* a topology that is not this machine: cannot bind at all */
  hwloc_topology_t x = load_xml("2numa_8core_4gpu.xml");
  cg_topo_plan_t plan;
  memset(&plan, 0, sizeof plan);
  plan.ncpus = 1;
  plan.cpus[0] = 3;
  cg_topo_t *t = cg_topo_create_from(x, &plan);
  int rc = 0;
  int lines = stderr_lines(cg_topo_pin_thread, t, 0, &rc);
  CG_TEST_CHECK(rc == -1 && lines == 1, "XML topology: rc %d, %d warning lines", rc, lines);
  lines = stderr_lines(cg_topo_pin_thread, t, 5, &rc);
  CG_TEST_CHECK(rc == -1 && lines == 1, "index out of range: rc %d, %d warning lines", rc, lines);
  cg_topo_destroy(t);
  cg_topo_destroy(NULL);

  /* this machine: a CPU it does not have fails; its first allowed CPU works */
  hwloc_topology_t me = NULL;
  if (cg_topo_hwloc_load(&me, NULL, NULL) != 0) {
    printf("# this machine's topology could not be loaded; skipping the live pin checks\n");
    return;
  }
  hwloc_bitmap_t before = hwloc_bitmap_alloc();
  int have_before = hwloc_get_cpubind(me, before, HWLOC_CPUBIND_THREAD) == 0;
  hwloc_bitmap_t ok = hwloc_bitmap_dup(hwloc_topology_get_allowed_cpuset(me));
  if (have_before) hwloc_bitmap_and(ok, ok, before);
  plan.ncpus = 2;
  plan.cpus[0] = CG_TOPO_MAX_CPUS * 4; /* no machine numbers a PU like that */
  plan.cpus[1] = hwloc_bitmap_first(ok);
  t = cg_topo_create_from(me, &plan);
  lines = stderr_lines(cg_topo_pin_thread, t, 0, &rc);
  CG_TEST_CHECK(rc == -1 && lines == 1, "missing CPU: rc %d, %d warning lines", rc, lines);
  lines = stderr_lines(cg_topo_pin_thread, t, 1, &rc);
  CG_TEST_CHECK(rc == 0 && lines == 0, "CPU %d: rc %d, %d lines", plan.cpus[1], rc, lines);
  if (rc == 0) {
    hwloc_bitmap_t now = hwloc_bitmap_alloc();
    CG_TEST_CHECK(hwloc_get_cpubind(me, now, HWLOC_CPUBIND_THREAD) == 0 &&
                      hwloc_bitmap_weight(now) == 1 &&
                      hwloc_bitmap_isset(now, (unsigned)plan.cpus[1]),
                  "thread binding after pin is not CPU %d", plan.cpus[1]);
    hwloc_bitmap_free(now);
  }
  if (have_before) hwloc_set_cpubind(me, before, HWLOC_CPUBIND_THREAD);
  cg_topo_destroy(t);
  hwloc_bitmap_free(ok);
  hwloc_bitmap_free(before);
}

int main(void) {
  test_gpu_node();
  test_no_gpu();
  test_fewer_cores();
  test_smt();
  test_pin();
  return cg_test_done("test_topo");
}
