/* nccl_comm.c: the NCCL communicator bootstrapped over MPI, and the NCCL-or-MPI choice
 * (nccl_comm.h).
 *
 * Agreement. NCCL set-up can fail on one rank only (no device, a refused GPU); a rank that
 * went on alone would wait for ever in the next collective. So each stage ends with agree():
 * an MPI_Allreduce of "the first rank that failed" and a broadcast of its message, after which
 * every rank takes the same branch with the same text. Nobody enters ncclCommInitRankConfig
 * unless every rank has its device and the unique id.
 *
 * Shared GPUs are found by gathering (host name, PCI bus id) of every rank: an ordinal says
 * nothing when each rank sees its own CUDA_VISIBLE_DEVICES. */
#include "nccl_comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#if defined(OPEN_MPI) && OPEN_MPI
#include <mpi-ext.h> /* MPIX_Query_cuda_support, when Open MPI was built with the extension */
#endif

enum { kPciLen = 32, kMsgLen = 400 };

#if defined(COGPU_HAVE_CUDA) && defined(COGPU_HAVE_NCCL)

#include <cuda_runtime.h>
#include <nccl.h>

/* NCCL's check (as cuda/cuda_check.h has the CUDA backend's, which comm/ does not include). */
#define CG_CHECK_NCCL(call)                                                                 \
  do {                                                                                      \
    ncclResult_t cg_nccl_rc_ = (call);                                                      \
    if (cg_nccl_rc_ != ncclSuccess)                                                         \
      cg_fatal(__FILE__, __LINE__, #call, "%s", ncclGetErrorString(cg_nccl_rc_));            \
  } while (0)

struct cg_nccl {
  ncclComm_t comm;
  int rank, size, dev;
};

/* Every rank: returns 1 if some rank of comm had a non-empty mine, and puts the message of the
 * lowest such rank into err (never NULL: cg_nccl_create's callers always give one). */
static int agree(MPI_Comm comm, const char *mine, char *err, size_t errlen) {
  int rank, size;
  CG_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  CG_CHECK_MPI(MPI_Comm_size(comm, &size));
  int me = mine[0] ? rank : size, first = size;
  CG_CHECK_MPI(MPI_Allreduce(&me, &first, 1, MPI_INT, MPI_MIN, comm));
  if (first == size) return 0;
  char msg[kMsgLen];
  snprintf(msg, sizeof msg, "%s", rank == first ? mine : "");
  CG_CHECK_MPI(MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, first, comm));
  snprintf(err, errlen, "%s", msg);
  return 1;
}

/* The ordinal the backend will use: device modulo the visible devices (cuda_create's rule). */
static int resolve_device(int device, char *why, size_t len) {
  int ndev = 0;
  const cudaError_t rc = cudaGetDeviceCount(&ndev);
  if (rc != cudaSuccess || ndev < 1) {
    (void)cudaGetLastError();
    snprintf(why, len, "no usable CUDA device (%s)",
             rc != cudaSuccess ? cudaGetErrorString(rc) : "none found");
    return -1;
  }
  return (device > 0 ? device : 0) % ndev;
}

typedef struct {
  char host[64];
  char pci[kPciLen];
  int rank;
} gpu_id_t;

static void gpu_id(int dev, int rank, gpu_id_t *id) {
  memset(id, 0, sizeof *id);
  id->rank = rank;
  if (gethostname(id->host, sizeof id->host - 1) != 0) snprintf(id->host, sizeof id->host, "?");
  if (dev < 0 || cudaDeviceGetPCIBusId(id->pci, (int)sizeof id->pci, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    snprintf(id->pci, sizeof id->pci, "ordinal %d", dev); /* compares like a bus id, mostly */
    return;
  }
  for (char *p = id->pci; *p; p++)
    if (*p >= 'A' && *p <= 'F') *p = (char)(*p - 'A' + 'a');
}

static int cmp_gpu_id(const void *a, const void *b) {
  const gpu_id_t *x = a, *y = b;
  int c = strcmp(x->host, y->host);
  if (!c) c = strcmp(x->pci, y->pci);
  return c ? c : (x->rank > y->rank) - (x->rank < y->rank);
}

/* Collective over comm: 1 if two ranks on one host drive the same GPU (device as for
 * cg_nccl_create), with "ranks 0 and 1 on host h share GPU 0000:3b:00.0" in desc (the lowest
 * such pair), else 0. */
static int find_shared(MPI_Comm comm, int device, char *desc, size_t len) {
  int rank, size;
  CG_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  CG_CHECK_MPI(MPI_Comm_size(comm, &size));
  char why[256];
  gpu_id_t me;
  gpu_id(resolve_device(device, why, sizeof why), rank, &me);
  gpu_id_t *all = cg_malloc(sizeof(gpu_id_t) * (size_t)size, "gpu ids");
  CG_CHECK_MPI(MPI_Allgather(&me, (int)sizeof me, MPI_BYTE, all, (int)sizeof me, MPI_BYTE, comm));
  qsort(all, (size_t)size, sizeof *all, cmp_gpu_id);
  int found = 0, best = size;
  for (int i = 0; i + 1 < size; i++) {
    const gpu_id_t *a = &all[i], *b = &all[i + 1];
    if (strcmp(a->host, b->host) || strcmp(a->pci, b->pci) || a->rank >= best) continue;
    best = a->rank;
    found = 1;
    snprintf(desc, len, "ranks %d and %d on host %s share GPU %s", a->rank, b->rank, a->host,
             a->pci);
  }
  free(all);
  return found;
}

int cg_nccl_built(void) { return 1; }

void cg_nccl_version(char *buf, size_t len) {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) {
    snprintf(buf, len, "unknown");
    return;
  }
  /* since 2.9: major*10000 + minor*100 + patch */
  snprintf(buf, len, "%d.%d.%d", v / 10000, (v / 100) % 100, v % 100);
}

cg_nccl_t *cg_nccl_create(MPI_Comm comm, int device, char *err, size_t errlen) {
  int rank, size;
  CG_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  CG_CHECK_MPI(MPI_Comm_size(comm, &size));
  char mine[kMsgLen] = "", why[256] = "";
  /* 1. device and unique id; the id travels with rank 0's verdict */
  const int dev = resolve_device(device, why, sizeof why);
  if (dev < 0) {
    snprintf(mine, sizeof mine, "rank %d: %s", rank, why);
  } else {
    const cudaError_t rc = cudaSetDevice(dev);
    if (rc != cudaSuccess) {
      (void)cudaGetLastError();
      snprintf(mine, sizeof mine, "rank %d: cudaSetDevice(%d): %s", rank, dev,
               cudaGetErrorString(rc));
    }
  }
  struct {
    int rc;
    ncclUniqueId id;
  } boot;
  memset(&boot, 0, sizeof boot);
  if (rank == 0) {
    boot.rc = (int)ncclGetUniqueId(&boot.id);
    if (boot.rc != ncclSuccess && !mine[0])
      snprintf(mine, sizeof mine, "ncclGetUniqueId on rank 0: %s (%s)",
               ncclGetErrorString((ncclResult_t)boot.rc), ncclGetLastError(NULL));
  }
  CG_CHECK_MPI(MPI_Bcast(&boot, (int)sizeof boot, MPI_BYTE, 0, comm));
  if (agree(comm, mine, err, errlen)) return NULL;

  /* 2. the communicator: every rank or none */
  ncclComm_t nc = NULL;
  ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
  cfg.blocking = 1;
  cfg.commName = "cogpu-gradients";
  const ncclResult_t r = ncclCommInitRankConfig(&nc, size, boot.id, rank, &cfg);
  if (r != ncclSuccess) {
    const char *last = ncclGetLastError(nc);
    snprintf(mine, sizeof mine, "NCCL could not create the communicator (rank %d, GPU %d): %s%s%s%s",
             rank, dev, ncclGetErrorString(r), last && last[0] ? " [" : "", last ? last : "",
             last && last[0] ? "]" : "");
  }
  if (agree(comm, mine, err, errlen)) {
    /* failed here or on a peer: abort never waits for the others */
    if (nc) (void)ncclCommAbort(nc);
    char desc[256];
    if (find_shared(comm, dev, desc, sizeof desc)) {
      const size_t k = strlen(err);
      if (k < errlen)
        snprintf(err + k, errlen - k, "; %s: NCCL needs one GPU per rank (--allreduce auto or "
                 "mpi uses MPI instead)", desc);
    }
    return NULL;
  }
  cg_nccl_t *n = cg_calloc(1, sizeof *n, "nccl communicator");
  n->comm = nc;
  n->rank = rank;
  n->size = size;
  n->dev = dev;
  return n;
}

void cg_nccl_destroy(cg_nccl_t *n) {
  if (!n) return;
  const cudaError_t rc = cudaSetDevice(n->dev);
  if (rc != cudaSuccess)
    cg_fatal(__FILE__, __LINE__, "cudaSetDevice(n->dev)", "%s (%s)", cudaGetErrorString(rc),
             cudaGetErrorName(rc));
  CG_CHECK_NCCL(ncclCommDestroy(n->comm));
  free(n);
}

void cg_nccl_abort(cg_nccl_t *n) {
  if (!n) return;
  (void)cudaSetDevice(n->dev);
  (void)ncclCommAbort(n->comm); /* best effort: this is already the error path */
  free(n);
}

int cg_nccl_rank(const cg_nccl_t *n) { return n->rank; }
int cg_nccl_size(const cg_nccl_t *n) { return n->size; }
int cg_nccl_device(const cg_nccl_t *n) { return n->dev; }

/* In-place or out-of-place sum of count elements of type t ("floats" / "bf16" in messages). */
static int allreduce_sum(cg_nccl_t *n, const void *d_send, void *d_recv, size_t count,
                         ncclDataType_t t, const char *what, struct CUstream_st *stream, char *err,
                         size_t errlen) {
  CG_ASSERT(n != NULL && d_send != NULL && d_recv != NULL);
  if (count == 0) return 0;
  const ncclResult_t r = ncclAllReduce(d_send, d_recv, count, t, ncclSum, n->comm,
                                       (cudaStream_t)stream);
  if (r == ncclSuccess) return 0;
  snprintf(err, errlen, "ncclAllReduce(%zu %s): %s [%s]", count, what, ncclGetErrorString(r),
           ncclGetLastError(n->comm));
  return -1;
}

int cg_nccl_allreduce_sum_f32(cg_nccl_t *n, const float *d_send, float *d_recv, size_t count,
                              struct CUstream_st *stream, char *err, size_t errlen) {
  return allreduce_sum(n, d_send, d_recv, count, ncclFloat32, "floats", stream, err, errlen);
}

int cg_nccl_allreduce_sum_bf16(cg_nccl_t *n, const uint16_t *d_send, uint16_t *d_recv,
                               size_t count, struct CUstream_st *stream, char *err, size_t errlen) {
  return allreduce_sum(n, d_send, d_recv, count, ncclBfloat16, "bf16", stream, err, errlen);
}

int cg_nccl_check_async(cg_nccl_t *n, char *err, size_t errlen) {
  ncclResult_t a = ncclSuccess;
  const ncclResult_t r = ncclCommGetAsyncError(n->comm, &a);
  if (r != ncclSuccess) {
    snprintf(err, errlen, "ncclCommGetAsyncError: %s", ncclGetErrorString(r));
    return -1;
  }
  if (a == ncclSuccess || a == ncclInProgress) return 0;
  snprintf(err, errlen, "NCCL asynchronous error: %s [%s]", ncclGetErrorString(a),
           ncclGetLastError(n->comm));
  return -1;
}

#else /* no CUDA or no NCCL: the MPI all-reduce is the only one */

struct cg_nccl {
  int unused;
};

static int find_shared(MPI_Comm comm, int dev, char *desc, size_t len) {
  (void)comm;
  (void)dev;
  (void)desc;
  (void)len;
  return 0;
}

int cg_nccl_built(void) { return 0; }

void cg_nccl_version(char *buf, size_t len) { snprintf(buf, len, "none"); }

cg_nccl_t *cg_nccl_create(MPI_Comm comm, int device, char *err, size_t errlen) {
  (void)comm;
  (void)device;
  snprintf(err, errlen, "this build has no NCCL");
  return NULL;
}

void cg_nccl_destroy(cg_nccl_t *n) { (void)n; }
void cg_nccl_abort(cg_nccl_t *n) { (void)n; }
int cg_nccl_rank(const cg_nccl_t *n) { (void)n; return 0; }
int cg_nccl_size(const cg_nccl_t *n) { (void)n; return 1; }
int cg_nccl_device(const cg_nccl_t *n) { (void)n; return -1; }

static int no_nccl(char *err, size_t errlen) {
  snprintf(err, errlen, "this build has no NCCL");
  return -1;
}

int cg_nccl_allreduce_sum_f32(cg_nccl_t *n, const float *d_send, float *d_recv, size_t count,
                              struct CUstream_st *stream, char *err, size_t errlen) {
  (void)n, (void)d_send, (void)d_recv, (void)count, (void)stream;
  return no_nccl(err, errlen);
}

int cg_nccl_allreduce_sum_bf16(cg_nccl_t *n, const uint16_t *d_send, uint16_t *d_recv,
                               size_t count, struct CUstream_st *stream, char *err, size_t errlen) {
  (void)n, (void)d_send, (void)d_recv, (void)count, (void)stream;
  return no_nccl(err, errlen);
}

int cg_nccl_check_async(cg_nccl_t *n, char *err, size_t errlen) {
  (void)n;
  (void)err;
  (void)errlen;
  return 0;
}

#endif

/* ---- build-independent ------------------------------------------------------------------- */

int cg_nccl_mpi_cuda_aware(void) {
#if defined(MPIX_CUDA_AWARE_SUPPORT)
  return MPIX_Query_cuda_support() ? 1 : 0; /* the library loaded at run time decides */
#else
  return 0;
#endif
}

int cg_nccl_choose(const cg_comm_t *c, const char *mode, int is_cuda, int device,
                   int deterministic, char *note, size_t notelen, char *err, size_t errlen) {
  note[0] = 0;
  const int force = !strcmp(mode, "nccl"), mpi = !strcmp(mode, "mpi");
  if (!force && !mpi && strcmp(mode, "auto")) {
    snprintf(err, errlen, "--allreduce: '%s' is not one of auto|nccl|mpi", mode);
    return -1;
  }
  if (force && !is_cuda) {
    snprintf(err, errlen, "--allreduce nccl needs the cuda backend");
    return -1;
  }
  if (force && !cg_nccl_built()) {
    snprintf(err, errlen, "--allreduce nccl: this build has no NCCL (use --allreduce auto or mpi)");
    return -1;
  }
  if (force && deterministic) {
    snprintf(err, errlen, "--allreduce nccl cannot be --deterministic: NCCL's summation order "
             "depends on message sizes (use --allreduce auto or mpi)");
    return -1;
  }
  if (!is_cuda) return 0; /* the cpu backend always reduces with MPI */
  if (force) {
    snprintf(note, notelen, "nccl (--allreduce nccl)");
    return 1;
  }
  if (c->size == 1) return 0; /* nothing to reduce */
  const char *how = cg_nccl_mpi_cuda_aware()
                        ? "host-staged buffers: MPI is CUDA-aware, but not its non-blocking reductions"
                        : "host-staged buffers";
  if (mpi) {
    snprintf(note, notelen, "mpi (--allreduce mpi; %s)", how);
    return 0;
  }
  if (deterministic) {
    snprintf(note, notelen, "mpi, fixed rank-order sum (--deterministic: NCCL's summation order "
             "depends on message sizes; %s)", how);
    return 0;
  }
  if (!cg_nccl_built()) {
    snprintf(note, notelen, "mpi (built without NCCL; %s)", how);
    return 0;
  }
  char desc[256] = "";
  if (find_shared(c->world, device, desc, sizeof desc)) {
    snprintf(note, notelen, "mpi (%s: NCCL cannot, using MPI; %s)", desc, how);
    return 0;
  }
  snprintf(note, notelen, "nccl (every rank has its own GPU)");
  return 1;
}
