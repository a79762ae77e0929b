/* ckpt.h: training checkpoints — format, atomic writes with rotation, the newest-valid scan,
 * loading and `cogpu-dist inspect`.
 *
 * A checkpoint holds everything a run needs to continue as if it had never stopped: the fp32
 * master weights, the AdamW moments and step count, the fp16 loss-scaler state, and the
 * position in the data stream. There is no RNG state to save beyond the seed: every random
 * decision (shuffle, flips, crops) is a pure function of (seed, epoch, sample index), so the
 * position (epoch, samples of that epoch already trained) is the whole state of the sampler.
 *
 * File layout (integers little-endian, offsets in bytes):
 *   header, 256 bytes
 *     0  char[8] magic            "CGCKPT\r\n"
 *     8  u32     version          5 (versions 1 to 4 are still read; 1 and 2 as nclass 1)
 *    12  u32     header_bytes     256
 *    16  u32     in_c, base, depth, height, width   the model shape (5 x u32, to 36)
 *    36  u32     precision        cg_precision_t of the writing run
 *    40  u64     nparams
 *    48  i64     step             training steps completed (the next step to run, 0-based)
 *    56  i64     epoch            epoch of that next step
 *    64  i64     epoch_samples    samples of that epoch already trained
 *    72  i64     steps_per_epoch  of the writing run
 *    80  i64     train_samples    size of the training set
 *    88  u32     ranks, batch     of the writing run (batch: a rank's samples a step, --batch x
 *                                 --grad-accum; global batch = ranks x batch)
 *    96  u64     seed
 *   104  i64     opt_t            AdamW steps taken (the bias-correction count)
 *   112  i64     total_steps      the writing run's planned length (learning-rate schedule)
 *   120  f32     loss_scale       fp16 dynamic loss scale (1 for other precisions)
 *   124  u32     reserved         0
 *   128  i64     scale_good_steps clean steps since the scale last changed
 *   136  i64     skipped_steps    fp16 steps skipped so far (inf/NaN gradients)
 *   144  f64     lr               learning rate of the last step (informative)
 *   152  i64     unix_time        when it was written (seconds; with unix_nsec below, the order
 *                                  in which --resume DIR tries a run's files)
 *   160  u64     payload_bytes    3 x nparams x 4 (4 x with ema)
 *   168  u32     payload_crc      CRC32 of the payload
 *   172  u64     run_id           the run's lineage: made when a run starts afresh, kept when it
 *                                  resumes (0: written before run ids, version 1)
 *   180  u32     nclass           classes of the head (1 = binary)             (version >= 3)
 *   184  i32     ignore_index     the mask label left out (-1: none)           (version >= 3)
 *   188  u32     npal             entries of the training masks' palette, 0..256 (0: gray
 *                                  masks or none known)                        (version >= 3)
 *   192  u32     palette_crc      CRC32 of the palette trailer                 (version >= 3)
 *   196  u32     settings_bytes   length of the settings trailer, 0..8191      (version >= 4)
 *   200  u32     settings_crc     CRC32 of the settings trailer                (version >= 4)
 *   204  u32     val_have         1: a validation ran at val_step, 0: none     (version >= 4)
 *   208  i64     val_step         the step the figures below were measured at  (version >= 4)
 *                                  (= step)
 *   216  f64     val_loss         mean validation loss per sample              (version >= 4)
 *   224  f64     val_iou          foreground IoU (binary) or mIoU (K >= 2)     (version >= 4)
 *   232  u32     unix_nsec        nanoseconds of unix_time (0: not stored)     (version >= 4)
 *   236  u32     ema              1: params is the weights' moving average (--ema-decay), the
 *                                  training weights follow v; 0: none          (version >= 5)
 *   240  ...     reserved, zero, up to 252
 *   252  u32     header_crc       CRC32 of bytes [0, 252)
 *   payload at 256: params, AdamW m, AdamW v (nparams little-endian f32 each, model.h layout),
 *   and with ema the training weights (as mmengine's EMAHook swaps them: whatever reads a
 *   checkpoint's model, predict, export, --init-from, reads the average; --resume trains on)
 *   then (version >= 3) the palette trailer: npal RGB triples (3 x npal bytes), so predict can
 *   write masks with the palette the training masks had
 *   then (version >= 4) the settings trailer: settings_bytes of UTF-8 JSON, one flat object
 *   {"flag": "value as given on the command line", ...} of every training-defining setting
 *   (run_settings.h lists them), so `train --resume DIR` needs no other flag
 *
 * Pointer files (version 4 writers): DIR/last names the newest checkpoint written, DIR/best
 * the one with the best validation figure (ckpt_info.best_by: highest val_iou, or lowest
 * val_loss). Each is a small text file, replaced atomically (atomic_file.h) after the
 * checkpoint itself is in place:
 *     ckpt-0000000060.cgck          the file name, in the same directory
 *     step 60
 *     val_iou 0.812345              (best only: the metric it was chosen by, and its value)
 * A checkpoint without validation figures never becomes best. When the file best names is
 * replaced (a step written again: a run resumed from an older checkpoint, or one without
 * validation at that step) or is gone, best is chosen again among the checkpoints whose headers
 * carry their own figures, or removed when none does: it never vouches for unmeasured weights.
 * Rotation never removes the file `best` names, and it does not count towards `keep`: the
 * `keep` newest others are kept besides it (keep + 1 files of this run while best is not the
 * newest).
 *
 * Files are DIR/ckpt-<step, 10 digits>.cgck. A write goes to a temporary file in DIR
 * (atomic_file.h), is fsynced, renamed over the final name and the directory is fsynced: a file
 * with the final name is always complete, and a failed write (full disk, unwritable directory)
 * leaves every existing checkpoint as it was. After a successful write, rotation removes, among the
 * checkpoints of the same run id only (this run and the runs it resumed from), all but the `keep`
 * newest (besides best's), and any of a later step than the one written (left by an abandoned
 * attempt of this lineage: it holds one line of history). A checkpoint of another run, or one whose
 * header cannot be read, is never removed. A writer killed mid-write leaves its temporary
 * (".ckpt-<step>.cgck.XXXXXX"); the next holder of the directory's lock removes those
 * (cg_ckpt_lock_dir).
 *
 * The reader bounds every header field (steps, epochs, sizes, counts: see cg_ckpt_read), so a
 * file with a valid CRC but absurd numbers is rejected by name and field rather than trusted.
 *
 * Return values: 0 success, -1 with a one-line message in err that names the file. Nothing here
 * aborts or uses MPI: the trainer calls these on rank 0 and shares the verdict. */
#ifndef CG_CKPT_H
#define CG_CKPT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "model.h" /* cg_model_t: the model a header describes (cg_ckpt_model) */

#define CG_CKPT_MAGIC "CGCKPT\r\n"
#define CG_CKPT_VERSION 5
#define CG_CKPT_SETTINGS_MAX 8192 /* settings trailer bytes + NUL */
#define CG_CKPT_HEADER_BYTES 256

/* The model a checkpoint belongs to; two shapes are compatible when every field is equal. */
typedef struct {
  int in_c, base, depth, height, width;
  uint64_t nparams;
  int nclass;          /* output classes (1 = binary; version <= 2 files read as 1) */
} cg_ckpt_shape_t;

typedef struct {
  cg_ckpt_shape_t shape;
  int precision;
  int64_t step, epoch, epoch_samples, steps_per_epoch, train_samples;
  int ranks, batch;
  uint64_t seed;
  int64_t opt_t, total_steps;
  float loss_scale;
  int64_t scale_good_steps, skipped_steps;
  double lr;
  int64_t unix_time;
  uint32_t unix_nsec;       /* nanoseconds of unix_time (0: not stored) */
  uint64_t run_id;
  int ignore_index;         /* -1: none (versions 1 and 2: none) */
  int npal;                 /* 0..256 palette entries of the training masks (0: gray/unknown) */
  uint8_t palette[768];     /* npal RGB triples */
  char settings[CG_CKPT_SETTINGS_MAX]; /* the settings JSON ("" = none: version <= 3) */
  int have_val;             /* a validation ran at val_step (its figures below) */
  int64_t val_step;
  double val_loss, val_iou; /* val_iou: IoU (binary) or mIoU (K >= 2) */
  int ema;                  /* params is the moving average; the training weights follow v */
  int best_by;              /* writer only, not stored: CG_CKPT_BEST_* that picks DIR/best */
  /* filled by the reader */
  uint32_t version;
  uint64_t payload_bytes;
  uint32_t payload_crc;
} cg_ckpt_info_t;

/* What DIR/best is chosen by (cg_ckpt_info_t.best_by). */
enum { CG_CKPT_BEST_IOU = 0, CG_CKPT_BEST_LOSS = 1 };

/* What the reader found wrong (or CG_CKPT_OK). */
typedef enum {
  CG_CKPT_OK = 0,
  CG_CKPT_EIO,       /* cannot open or read */
  CG_CKPT_EMAGIC,    /* not a checkpoint */
  CG_CKPT_EVERSION,  /* a format version this build does not read */
  CG_CKPT_ECORRUPT,  /* header or payload CRC mismatch, inconsistent header */
  CG_CKPT_ETRUNC,    /* shorter (or longer) than its header says */
  CG_CKPT_ESHAPE     /* another model shape */
} cg_ckpt_status_t;

/* "in 5, base 4, depth 2, 32x32, 1234 parameters" */
void cg_ckpt_shape_str(const cg_ckpt_shape_t *s, char *buf, size_t len);

/* DIR/ckpt-<step>.cgck into buf. */
void cg_ckpt_path(const char *dir, int64_t step, char *buf, size_t len);

/* Creates dir (and missing parents) if needed and checks that a file can be created in it
 * (a probe file is created and removed: permission bits alone say nothing to root). flag
 * ("--checkpoint-dir", import's "--out") names the directory in err. */
int cg_ckpt_prepare_dir(const char *dir, const char *flag, char *err, size_t errlen);

/* Writes the checkpoint of info->step to DIR atomically, then rotates (see above). params, m,
 * v: info->shape.nparams floats each; train: the training weights when params is their moving
 * average (the header's ema field says so, whatever info->ema holds), else NULL. path
 * (optional) receives the file's name. On failure the temporary file is removed and nothing
 * else in DIR changes. A failed rotation (a file that cannot be removed) is not an error: the
 * new checkpoint is in place. */
int cg_ckpt_write(const char *dir, const cg_ckpt_info_t *info, const float *params,
                  const float *m, const float *v, const float *train, int keep, char *path,
                  size_t pathlen, char *err, size_t errlen);

/* One run at a time writes to a checkpoint directory: rank 0 holds an exclusive flock(2) on
 * DIR/.cogpu-dist.lock for the run's life (the kernel drops it when the process ends, however
 * it ends; on NFS, a dead node's lock lasts until the server's lease for it ends), and writes
 * its pid, host and start time there. Two runs in one directory would replace each other's
 * checkpoints, last and best. A holder on another host is waited for up to 120 s (a job
 * requeued after its node died; a stop signal ends the wait). flag: the option that named DIR,
 * for the messages. Returns the lock's descriptor (>= 0), -1 with err naming the
 * holder when another process holds it, or -2 with err when the directory's filesystem takes
 * no locks (the caller warns and goes on). Filesystems that keep flock node-local (Lustre's
 * localflock, BeeGFS by default) exclude runs on one node only. Once the lock is held, the
 * temporaries a writer killed mid-write left in DIR are removed, with a notice: regular files
 * named as atomic_file.h names the temporaries of a checkpoint, best, last or history.jsonl
 * (".<name>.XXXXXX"), nothing else. */
int cg_ckpt_lock_dir(const char *dir, const char *flag, char *err, size_t errlen);

/* --overwrite-checkpoints: a run starting afresh in DIR (holding its lock) first moves the
 * earlier run's files there (checkpoints, best, last, history.jsonl) into a new folder
 * DIR/previous-<UTC time>/, whose path goes to sub: nothing is deleted or replaced, and
 * `--resume DIR`, best, last and the history then see the new run only. *moved: files moved
 * (0: there were none, and no folder is made). 0, or -1 with err (some may have moved). */
int cg_ckpt_set_aside(const char *dir, char *sub, size_t sublen, int *moved, char *err,
                      size_t errlen);

/* Reads the pointer file DIR/NAME ("best" or "last"): the checkpoint's path (DIR/file) into
 * path, its step, and (best) the metric's name and value. 0, or -1 when absent or malformed. */
int cg_ckpt_read_pointer(const char *dir, const char *name, char *path, size_t pathlen,
                         int64_t *step, char *metric, size_t metriclen, double *value);

/* Where a run resumed from checkpoint `in` starts (0-based step = steps completed), for a
 * training set of ntrain samples, `global` samples per step and spe steps per epoch. The
 * checkpoint says how far into its epoch training had got: epoch_samples samples of the epoch's
 * permutation, which depends on (seed, epoch) only. With the same global batch and training set
 * that is exactly in->step (*exact = 1). Otherwise (*exact = 0) the run continues in the same
 * epoch at the first batch of the new size that was not fully trained: batch
 * floor(epoch_samples / global). Its first samples (fewer than one batch) are trained a second
 * time; nothing is skipped. A training set that shrank below the position moves on to the next
 * epoch. Steps (--steps, the schedule, reports) count batches of the new size from then on. */
int64_t cg_ckpt_map_position(const cg_ckpt_info_t *in, int64_t ntrain, int64_t global,
                             int64_t spe, int *exact);

/* A new run id: random, never 0. */
uint64_t cg_ckpt_new_run_id(void);

/* Reads and verifies path. want (optional): the shape the caller needs; another shape is
 * CG_CKPT_ESHAPE with both shapes in err. params, m, v: want->nparams floats each, or all NULL
 * to verify only (the payload is streamed through the CRC). train (optional, with params): the
 * training weights of a checkpoint with a moving average (info->ema; params gets the average),
 * untouched without one; NULL streams them through the CRC. On any status but CG_CKPT_OK the
 * arrays hold garbage. info (optional) gets the header once it has been verified. */
cg_ckpt_status_t cg_ckpt_read(const char *path, const cg_ckpt_shape_t *want,
                              cg_ckpt_info_t *info, float *params, float *m, float *v,
                              float *train, char *err, size_t errlen);

/* The model a verified header in describes, built into m: the format only checks the header's
 * fields one by one, so a header whose parameter count is not its model's (a forged or broken
 * file whose CRCs were made to match) is caught here, before a reader sizes buffers from the
 * model and reads the count's floats into them. 0, or -1 with err naming path. */
int cg_ckpt_model(const char *path, const cg_ckpt_info_t *in, cg_model_t *m, char *err,
                  size_t errlen);

/* Checkpoint files of dir (by name only, not verified), newest step first. *paths and *steps
 * are malloc'd arrays of *n entries (each path malloc'd); free with cg_ckpt_list_free.
 * A missing directory is an empty list; -1 only when it cannot be read. */
int cg_ckpt_list(const char *dir, char ***paths, int64_t **steps, int *n, char *err,
                 size_t errlen);
void cg_ckpt_list_free(char **paths, int64_t *steps, int n);

/* Loads the newest valid checkpoint of the newest run in dir. The newest run is the run (run id)
 * of the file DIR/last names (the checkpoint written most recently, by whichever run), or
 * without a usable DIR/last the run whose newest file was written last (header time). A higher
 * step is not newer: a run started afresh, or resumed from an older checkpoint, writes low steps
 * after high ones. That run's files are tried newest written first (header time; the higher
 * step on a tie, as in files written before nanoseconds were stored), so a DIR/last left stale
 * by a crash between a checkpoint and its pointer costs nothing, and a later step left by an
 * abandoned attempt (kept as best) is not taken; files whose header cannot be read are tried
 * among them by their mtime; then the other runs', runs by recency (reported when one is used).
 * Each one rejected (truncated, corrupt, wrong magic, another shape...) is passed to report (one
 * line naming the file and why; report may be NULL) and the next one is tried. Returns 0 with the
 * chosen file in path, 1 when dir holds no checkpoint file at all, -1 when none of them is valid
 * (err then says how many were tried). want and the arrays as for cg_ckpt_read (all NULL: verify
 * only, as `predict --checkpoint DIR` does before it knows the model). */
int cg_ckpt_find(const char *dir, const cg_ckpt_shape_t *want, cg_ckpt_info_t *info,
                 float *params, float *m, float *v, float *train, char *path, size_t pathlen,
                 void (*report)(void *ctx, const char *line), void *ctx, char *err,
                 size_t errlen);

/* The header of path, magic, version and header CRC checked (not the payload): for a quick look
 * at another checkpoint (its step and run id). 0, or -1 when it cannot be read or trusted. */
int cg_ckpt_header(const char *path, cg_ckpt_info_t *in);

/* Whether the first n bytes of a file are a safetensors file's (cogpu-dist export's) beginning:
 * the header's length (u64 LE, any value: a damaged length is the importer's to name) and the
 * JSON header's '{' at byte 8, as the format requires, and no checkpoint's magic. Tells
 * --init-from's two kinds of file apart, and names such a file where a checkpoint is wanted. */
int cg_ckpt_is_safetensors(const uint8_t *b, size_t n);

/* src is a pointer file (DIR/best, DIR/last: short text naming a checkpoint of its directory,
 * not a checkpoint's magic): 1 with the checkpoint's path (DIR/file) in target, else 0. */
int cg_ckpt_pointer_target(const char *src, char *target, size_t targetlen);

/* The checkpoint DIR/last names, DIR being the directory of the checkpoint file ckpt: its path
 * into last and its step (optional), 0; -1 when DIR has no usable DIR/last. */
int cg_ckpt_last_of(const char *ckpt, char *last, size_t lastlen, int64_t *step);

/* What a user names as a checkpoint (predict and export --checkpoint, train --init-from): a
 * checkpoint FILE; a pointer file DIR/best or DIR/last (the checkpoint it names); or a DIR (its
 * newest run's newest valid checkpoint, cg_ckpt_find's choice, with each one rejected passed to
 * report). The chosen file goes to path and its header, once verified (CRCs; the payload is
 * streamed through its CRC), to info. 0, 1 when DIR holds no checkpoint, or -1 with err (which
 * names the file but not the flag: the caller prefixes it). */
int cg_ckpt_resolve(const char *src, cg_ckpt_info_t *info, char *path, size_t pathlen,
                    void (*report)(void *ctx, const char *line), void *ctx, char *err,
                    size_t errlen);

/* `cogpu-dist inspect FILE|DIR`: prints the header of FILE (with its validation figures and
 * settings) and verifies its CRCs, or for a directory each checkpoint's step, verdict and
 * validation figures, newest step first, marked `last` / `best` as the pointer files name them,
 * and which one --resume would use (cg_ckpt_find's order). Returns the process exit code: 0 all
 * valid / one usable, 1 invalid, 2 usage. */
int cg_ckpt_inspect_main(int argc, char **argv);

#endif
