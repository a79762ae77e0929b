/* tboard.h: TensorBoard scalars (--tensorboard DIR), written without TensorFlow: the event-file
 * format `tensorboard --logdir` and PyTorch's SummaryWriter read.
 *
 * A file DIR/events.out.tfevents.<unix time>.<host>.<pid>.cogpu of TFRecords: each record is
 * u64 length, u32 masked CRC-32C of those 8 bytes, the data, u32 masked CRC-32C of the data
 * (masked: ((crc >> 15) | (crc << 17)) + 0xa282ead8), all little-endian. The data is a
 * tensorflow.Event protocol buffer: first {wall_time, file_version "brain.Event:2"}, then one
 * {wall_time, step, summary {value {tag, simple_value}}} per scalar. Every scalar is flushed, so
 * a crash loses nothing written; a resumed run starts a new file in the same directory, which
 * TensorBoard reads as the same run. Rank 0 only; no MPI. */
#ifndef CG_TBOARD_H
#define CG_TBOARD_H

#include <stddef.h>
#include <stdint.h>

typedef struct cg_tb cg_tb_t;

/* Creates dir (and its parents) if missing and a new event file in it. purge_step >= 0 (a
 * resumed run's file): its first event after the file version says the session started again
 * at that step (SessionLog START), so TensorBoard drops the points of that step and later from
 * the directory's earlier files (those of an attempt past the checkpoint the run resumed from),
 * as PyTorch's SummaryWriter(purge_step=) does; -1: none. NULL with err filled when the
 * directory or the file cannot be made. */
cg_tb_t *cg_tb_open(const char *dir, int64_t purge_step, char *err, size_t errlen);
/* One scalar: tag (such as "val/loss"), the step, the value; the wall time is now. 0, or -1
 * with err filled (a write failed: the handle stays usable but the file is incomplete). */
int cg_tb_scalar(cg_tb_t *t, const char *tag, int64_t step, double value, char *err,
                 size_t errlen);
/* The event file's path (owned by t). */
const char *cg_tb_path(const cg_tb_t *t);
void cg_tb_close(cg_tb_t *t); /* NULL-safe */

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of n bytes, chained from crc (start
 * from 0): what TFRecords use. */
uint32_t cg_crc32c(uint32_t crc, const void *p, size_t n);

#endif
