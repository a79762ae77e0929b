/* comm.h: MPI bootstrap and the job's communicators.
 *
 * One cg_comm_t per process, made by cg_comm_init after MPI_Init_thread: the world
 * communicator, the node-local one (MPI_Comm_split_type SHARED) giving the local rank, and the
 * host name. cg_comm_init also sets the log identity (log.h). Collectives used by the trainer
 * (stats gathers, metric sums, agreement on flags) are plain MPI calls on c->world. */
#ifndef CG_COMM_H
#define CG_COMM_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  MPI_Comm world;      /* dup of MPI_COMM_WORLD */
  MPI_Comm local;      /* ranks on this node */
  int rank, size;
  int local_rank, local_size;
  int node, nnodes;    /* node index (by lowest world rank on the node) and count */
  char host[64];
} cg_comm_t;

/* MPI_Init_thread (MPI_THREAD_FUNNELED is enough: only the driving thread calls MPI), then the
 * communicators. Fatal on failure. */
void cg_comm_init(cg_comm_t *c, int *argc, char ***argv);
/* A cg_comm_t over a subset of the job (MPI already running): dups comm, splits it by node.
 * Collective over comm. Free with cg_comm_free. Used by the scaling benchmark. */
void cg_comm_init_from(cg_comm_t *c, MPI_Comm comm);
void cg_comm_free(cg_comm_t *c);

/* Frees the communicators and calls MPI_Finalize. */
void cg_comm_finalize(cg_comm_t *c);

/* All ranks: 1 if any rank passed nonzero (a small all-reduce). */
int cg_comm_any(const cg_comm_t *c, int flag);
/* All ranks: the ranks whose msg is non-NULL failed; rank 0 prints each distinct message once
 * to stderr as "cogpu-dist: error: MSG (rank 3)", "(ranks 0-2, 5)" or "(all 64 ranks)" (a job of
 * one process: MSG alone), instead of one identical line per rank. Messages are compared on their first 480 bytes. Collective;
 * returns 1 if any rank failed. */
int cg_comm_report_errors(const cg_comm_t *c, const char *msg);
/* Sums n int64 / doubles over ranks in place. */
void cg_comm_sum_i64(const cg_comm_t *c, int64_t *v, int n);
void cg_comm_sum_f64(const cg_comm_t *c, double *v, int n);
/* Rank 0's n floats to every rank (in pieces: MPI counts are int). */
void cg_comm_bcast_floats(const cg_comm_t *c, float *p, size_t n);

#endif
