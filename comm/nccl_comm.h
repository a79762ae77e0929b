/* nccl_comm.h: the job's NCCL communicator for the gradient all-reduce; NCCL or MPI.
 *
 * One communicator per job, bootstrapped over MPI as in llm.c's zero.cuh: rank 0 makes the
 * NCCL unique id, MPI_Bcast sends it, every rank selects its GPU and calls
 * ncclCommInitRankConfig (blocking mode). Unlike zero.cuh nothing here exits: failures come
 * back as NULL / -1 with a message, and every rank reaches the same verdict (the outcome is
 * agreed over MPI), so the caller can report once and leave every rank in step.
 *
 * The choice (cg_nccl_choose, --allreduce auto|nccl|mpi): auto uses NCCL when the build has it,
 * the backend is cuda, there are several ranks, --deterministic is off and no two ranks of a
 * node drive the same GPU (compared by PCI bus id: NCCL refuses a GPU shared by two ranks of a
 * communicator). Otherwise gradients go through MPI (comm/gsync.h) on host-staged buffers.
 * --deterministic keeps MPI's fixed rank-order sum: NCCL's summation order depends on message
 * sizes, so results would depend on --bucket-mb.
 *
 * Streams: collectives are enqueued on the caller's stream (a cudaStream_t, declared here as
 * struct CUstream_st * so that C files without CUDA headers can include this one) and may be
 * captured into a CUDA graph. Every rank must issue its collectives in the same order.
 *
 * Order of teardown: destroy every CUDA graph that captured NCCL work (the CUDA backend does in
 * its destroy) before cg_nccl_destroy, and cg_nccl_destroy before MPI_Finalize.
 *
 * Sum, not average: the trainer's per-sample loss weights (1 / global batch) already make the
 * summed gradient the mean gradient, as on the MPI path.
 *
 * Without CUDA and NCCL the functions exist and report "this build has no NCCL". (The file is
 * not called nccl.h: comm/ is on the include path and would hide NCCL's own <nccl.h>.) */
#ifndef CG_NCCL_COMM_H
#define CG_NCCL_COMM_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "comm.h"

struct CUstream_st; /* cudaStream_t is struct CUstream_st * */

typedef struct cg_nccl cg_nccl_t;

/* 1 when built with NCCL (and CUDA). */
int cg_nccl_built(void);
/* "2.28.9" (the loaded library) into buf, or "none". */
void cg_nccl_version(char *buf, size_t len);

/* Collective over comm. device: this rank's CUDA ordinal, taken modulo the visible devices (as
 * the CUDA backend does). Returns the communicator (the caller owns it), or NULL on every rank
 * with a message in err: NCCL's error string and last warning, and when two ranks share a GPU,
 * which GPU. Never aborts on NCCL errors; MPI errors stay fatal. */
cg_nccl_t *cg_nccl_create(MPI_Comm comm, int device, char *err, size_t errlen);
/* Frees the communicator (ncclCommDestroy; waits for its pending work). NULL is a no-op. Not
 * after MPI_Finalize; not while a CUDA graph holding its work exists. */
void cg_nccl_destroy(cg_nccl_t *n);
/* Ends the communicator without waiting for peers (ncclCommAbort), e.g. after a peer died or
 * an asynchronous error; frees n. NULL is a no-op. */
void cg_nccl_abort(cg_nccl_t *n);

int cg_nccl_rank(const cg_nccl_t *n);
int cg_nccl_size(const cg_nccl_t *n);
int cg_nccl_device(const cg_nccl_t *n); /* the CUDA ordinal the communicator uses */

/* Enqueues the sum over ranks of count floats of d_send into d_recv (device memory; in place
 * when d_send == d_recv) on stream. Returns 0, or -1 with NCCL's message in err (the caller
 * decides whether that is fatal: inside a graph capture it is not). */
int cg_nccl_allreduce_sum_f32(cg_nccl_t *n, const float *d_send, float *d_recv, size_t count,
                              struct CUstream_st *stream, char *err, size_t errlen);

/* The same in bf16 (ncclBfloat16, --grad-comm bf16): count bf16 values, as uint16_t bit
 * patterns (comm/bf16.h); NCCL adds them in fp32 and rounds each partial sum to bf16. */
int cg_nccl_allreduce_sum_bf16(cg_nccl_t *n, const uint16_t *d_send, uint16_t *d_recv,
                               size_t count, struct CUstream_st *stream, char *err, size_t errlen);

/* Asynchronous errors of the communicator (ncclCommGetAsyncError), for a watchdog: 0 = none
 * (or still in progress), -1 with a message. Local, not collective. */
int cg_nccl_check_async(cg_nccl_t *n, char *err, size_t errlen);

/* How to all-reduce gradients. Collective over c->world; every rank passes the same mode,
 * is_cuda and deterministic. mode: "auto" | "nccl" | "mpi". device: as for cg_nccl_create.
 * Returns 1 (use NCCL: call cg_nccl_create next), 0 (use MPI), or -1 with err when the mode
 * cannot be honoured (nccl without a build with NCCL, on the cpu backend, or with
 * --deterministic). note gets one line for rank 0 to print (why), "" when there is nothing to
 * say (one rank, or the cpu backend). A forced "nccl" with a GPU shared by two ranks returns 1:
 * NCCL itself then refuses and cg_nccl_create says so. */
int cg_nccl_choose(const cg_comm_t *c, const char *mode, int is_cuda, int device,
                   int deterministic, char *note, size_t notelen, char *err, size_t errlen);

/* 1 if the MPI library says it is CUDA-aware (MPIX_Query_cuda_support), else 0. Reported only:
 * the gradient all-reduce stays host-staged even then, since it is non-blocking and Open MPI's
 * non-blocking reductions (libnbc, 4.x and 5.0) compute on the host and do not take device
 * memory (open-mpi/ompi#3059, #12045). */
int cg_nccl_mpi_cuda_aware(void);

#endif
