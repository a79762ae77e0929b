/* ckpt_inspect.c: `cogpu-dist inspect FILE|DIR` (ckpt.h) — a checkpoint's header and verdict, or
 * a directory's checkpoints with their verdicts, the files DIR/last and DIR/best name and the
 * one `train --resume DIR` would load.
 *
 * It reads only, and with the trainer's own reader and resume order (ckpt_impl.h), so what it
 * says about a directory is what a run would do there. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "atomic_file.h" /* cg_afile_kind */
#include "backend.h"     /* cg_precision_name */
#include "ckpt.h"        /* cg_ckpt_read, cg_ckpt_list, cg_ckpt_read_pointer */
#include "ckpt_impl.h"   /* cg_ckpt_read_header, cg_ckpt_resume_order: what --resume DIR does */
#include "json.h"        /* cg_json_parse: the stored settings */
#include "log.h"         /* CG_EXIT_USAGE, cg_malloc */

static const char *precision_str(int p) {
  return p >= CG_PREC_FP32 && p <= CG_PREC_FP16 ? cg_precision_name((cg_precision_t)p) : "?";
}

static void print_info(const char *path, const cg_ckpt_info_t *in) {
  char shape[160], when[64] = "?";
  cg_ckpt_shape_str(&in->shape, shape, sizeof shape);
  time_t t = (time_t)in->unix_time;
  struct tm tmv;
  if (gmtime_r(&t, &tmv)) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tmv);
  const int64_t global = (int64_t)in->ranks * in->batch;
  printf("file:          %s\n", path);
  printf("format:        cogpu-dist checkpoint, version %u, %d-byte header (CRC ok)\n",
         in->version, CG_CKPT_HEADER_BYTES);
  printf("model:         UNet %s\n", shape);
  char ign[32] = "none";
  if (in->ignore_index >= 0) snprintf(ign, sizeof ign, "%d", in->ignore_index);
  printf("classes:       %d%s, ignore label %s%s\n", in->shape.nclass,
         in->shape.nclass > 1 ? "" : " (binary)", ign,
         in->npal ? ", masks with a palette (kept for predict)" : "");
  printf("precision:     %s (of the run that wrote it)\n", precision_str(in->precision));
  printf("step:          %lld completed; next: epoch %lld, %lld of its %lld samples trained\n",
         (long long)in->step, (long long)in->epoch, (long long)in->epoch_samples,
         (long long)in->train_samples);
  /* the header's batch is a rank's samples a step: --batch x --grad-accum */
  char accum[80] = "";
  cg_json_t *js = cg_json_parse(in->settings, NULL, 0); /* NULL: none stored (version <= 3) */
  const int a = js ? atoi(cg_json_str(js, "grad-accum", "1")) : 1;
  if (a > 1 && in->batch % a == 0)
    snprintf(accum, sizeof accum, " (--batch %d x --grad-accum %d)", in->batch / a, a);
  printf("written by:    %d rank(s) x batch %d%s (global batch %lld, %lld steps per epoch), "
         "seed %llu\n",
         in->ranks, in->batch, accum, (long long)global, (long long)in->steps_per_epoch,
         (unsigned long long)in->seed);
  const int sgd = js && !strcmp(cg_json_str(js, "optimizer", "adamw"), "sgd");
  if (sgd)
    printf("optimizer:     SGD, momentum %s%s, %lld steps, last lr %g, planned total %lld steps\n",
           cg_json_str(js, "momentum", "?"),
           !strcmp(cg_json_str(js, "nesterov", "off"), "on") ? " (Nesterov)" : "",
           (long long)in->opt_t, in->lr, (long long)in->total_steps);
  else
    printf("optimizer:     AdamW t %lld, last lr %g, planned total %lld steps\n",
           (long long)in->opt_t, in->lr, (long long)in->total_steps);
  printf("loss scaler:   scale %g, %lld clean steps since the last change, %lld steps skipped\n",
         (double)in->loss_scale, (long long)in->scale_good_steps, (long long)in->skipped_steps);
  printf("written:       %s\n", when);
  if (in->run_id)
    printf("run id:        %016llx (kept across resumes; rotation only removes this run's files)\n",
           (unsigned long long)in->run_id);
  else
    printf("run id:        none (format version 1)\n");
  printf("payload:       %llu bytes (%s, %s%s), CRC %08x ok\n",
         (unsigned long long)in->payload_bytes,
         in->ema ? "params: the weights' moving average" : "params",
         sgd ? "SGD momentum buffer, 0s where AdamW keeps v" : "AdamW m, AdamW v",
         in->ema ? ", the training weights" : "", in->payload_crc);
  cg_json_free(js);
  if (in->have_val)
    printf("validation:    at step %lld: val_loss %.6f, %s %.6f\n", (long long)in->val_step,
           in->val_loss, in->shape.nclass > 1 ? "val_miou" : "val_iou", in->val_iou);
  else
    printf("validation:    none at this step\n");
  printf("settings:      %s\n", in->settings[0] ? in->settings
                                : in->version > 3 ? "none stored (made by import: a run's "
                                                    "command line gives them)"
                                                  : "none stored (format version 3 or older)");
}

/* "val_iou 0.8123, val_loss 0.2345" or "no validation" */
static void val_str(const cg_ckpt_info_t *in, char *buf, size_t len) {
  if (!in->have_val) snprintf(buf, len, "no validation");
  else
    snprintf(buf, len, "%s %.4f  val_loss %.4f", in->shape.nclass > 1 ? "val_miou" : "val_iou",
             in->val_iou, in->val_loss);
}

/* What DIR/last and DIR/best name (cg_ckpt_read_pointer; has_*: the file is there and valid). */
typedef struct {
  int has_last, has_best;
  char lpath[4200], bpath[4200], bmet[32];
  int64_t lstep, bstep;
  double bval;
} pointers_t;

static void read_pointers(const char *dir, pointers_t *pt) {
  memset(pt, 0, sizeof *pt);
  pt->lstep = pt->bstep = -1;
  pt->has_last = cg_ckpt_read_pointer(dir, "last", pt->lpath, sizeof pt->lpath, &pt->lstep,
                                      NULL, 0, NULL) == 0;
  pt->has_best = cg_ckpt_read_pointer(dir, "best", pt->bpath, sizeof pt->bpath, &pt->bstep,
                                      pt->bmet, sizeof pt->bmet, &pt->bval) == 0;
}

/* 1 or 2: whether the n files hold more than one run (files whose header cannot be read do not
 * count), for naming each line's run only where several are there. */
static int count_runs(char **paths, int n) {
  int runs = 0;
  uint64_t first_run = 0;
  for (int i = 0; i < n && runs < 2; i++) {
    cg_ckpt_info_t h;
    if (cg_ckpt_read_header(paths[i], &h) != 0) continue;
    if (!runs || h.run_id != first_run) runs++;
    if (runs == 1) first_run = h.run_id;
  }
  return runs;
}

/* cg_ckpt_read, verify only, and the model the header describes (cg_ckpt_model): a file whose
 * header contradicts its own model is not valid, whatever its CRCs say. */
static cg_ckpt_status_t read_checked(const char *path, cg_ckpt_info_t *in, char *err,
                                     size_t errlen) {
  cg_ckpt_status_t st = cg_ckpt_read(path, NULL, in, NULL, NULL, NULL, NULL, err, errlen);
  if (st != CG_CKPT_OK) return st;
  cg_model_t *m = cg_malloc(sizeof *m, "model");
  if (cg_ckpt_model(path, in, m, err, errlen)) st = CG_CKPT_ECORRUPT;
  free(m);
  return st;
}

/* One line of the directory listing: the checkpoint path of `step`, verified whole. Returns
 * whether it is valid. */
static int print_entry(const char *path, int64_t step, const pointers_t *pt, int show_run) {
  char err[1024];
  cg_ckpt_info_t in;
  cg_ckpt_status_t st = read_checked(path, &in, err, sizeof err);
  if (st != CG_CKPT_OK) {
    printf("  step %-10lld INVALID  %s\n", (long long)step, err);
    return 0;
  }
  char shape[160], vs[96], mark[48];
  cg_ckpt_shape_str(&in.shape, shape, sizeof shape);
  val_str(&in, vs, sizeof vs);
  snprintf(mark, sizeof mark, "%s%s", pt->has_last && pt->lstep == step ? " last" : "",
           pt->has_best && pt->bstep == step ? " best" : "");
  if (show_run)
    snprintf(mark + strlen(mark), sizeof mark - strlen(mark), " run %016llx",
             (unsigned long long)in.run_id);
  printf("  step %-10lld valid    %-34s %s  (%s)%s\n", (long long)step, vs, path, shape, mark);
  return 1;
}

/* A pointer file DIR/NAME that is there but names no checkpoint (malformed): 1, with its path in
 * p; 0 when there is none. */
static int malformed(const char *dir, const char *name, char *p, size_t len) {
  struct stat st;
  snprintf(p, len, "%s/%s", dir, name);
  return lstat(p, &st) == 0;
}

/* "; its file is missing" when a pointer names a checkpoint that is not there. */
static const char *gone(const char *path) {
  struct stat st;
  return stat(path, &st) != 0 ? "; its file is missing" : "";
}

/* The `last:` and `best:` lines. */
static void print_pointers(const char *dir, const pointers_t *pt) {
  char p[4200];
  if (pt->has_last)
    printf("last: %s (step %lld%s)\n", pt->lpath, (long long)pt->lstep, gone(pt->lpath));
  else if (malformed(dir, "last", p, sizeof p))
    printf("last: none (%s is not a pointer file: it names no checkpoint)\n", p);
  else printf("last: none (no pointer file %s)\n", p);
  if (!pt->has_best) {
    if (malformed(dir, "best", p, sizeof p))
      printf("best: none (%s is not a pointer file: it names no checkpoint)\n", p);
    else printf("best: none (no checkpoint with validation figures yet)\n");
    return;
  }
  /* DIR/best says val_iou for the class mean too: name it as train does */
  cg_ckpt_info_t *bi = cg_malloc(sizeof *bi, "checkpoint header");
  const int miou = !strcmp(pt->bmet, "val_iou") && cg_ckpt_read_header(pt->bpath, bi) == 0 &&
                   bi->shape.nclass > 1;
  free(bi);
  printf("best: %s (step %lld, %s %.6f%s)\n", pt->bpath, (long long)pt->bstep,
         miou ? "val_miou" : pt->bmet, pt->bval, gone(pt->bpath));
}

/* inspect FILE: its header and verdict; exit 0 valid, 1 not. */
static int inspect_file(const char *path) {
  char err[1024];
  cg_ckpt_info_t in;
  cg_ckpt_status_t st = read_checked(path, &in, err, sizeof err);
  if (st != CG_CKPT_OK) {
    printf("file:          %s\nverdict:       INVALID: %s\n", path, err);
    return 1;
  }
  print_info(path, &in);
  printf("verdict:       valid\n");
  return 0;
}

/* inspect DIR: every checkpoint newest step first, the pointers, and what --resume would load;
 * exit 0 when one is usable, 1 when none is, 2 when the directory cannot be listed. */
static int inspect_dir(const char *dir) {
  char **paths;
  int64_t *steps;
  int n;
  char err[1024];
  if (cg_ckpt_list(dir, &paths, &steps, &n, err, sizeof err) != 0) {
    fprintf(stderr, "cogpu-dist inspect: error: %s\n", err);
    return CG_EXIT_USAGE;
  }
  pointers_t pt;
  read_pointers(dir, &pt);
  int *order = cg_malloc(sizeof(int) * (size_t)(n ? n : 1), "resume order");
  int *ok = cg_calloc((size_t)(n ? n : 1), sizeof(int), "verdicts");
  uint64_t newest_run = 0;
  cg_ckpt_resume_order(dir, paths, steps, n, order, &newest_run);
  /* several runs here: each line names its run, so the choice of --resume can be followed */
  const int runs = count_runs(paths, n);
  printf("%s: %d checkpoint(s), newest step first%s\n", dir, n,
         runs > 1 ? "; more than one run (run ids shown; --resume takes the newest run's)" : "");
  for (int i = 0; i < n; i++) ok[i] = print_entry(paths[i], steps[i], &pt, runs > 1);
  int chosen = -1;
  for (int k = 0; k < n && chosen < 0; k++)
    if (ok[order[k]]) chosen = order[k];
  free(order);
  free(ok);
  print_pointers(dir, &pt);
  if (chosen >= 0)
    printf("--resume would load %s: the newest run's last written valid checkpoint (DIR/last names "
           "the newest run; it also skips checkpoints of another model shape)\n", paths[chosen]);
  else printf("--resume would find no valid checkpoint here\n");
  cg_ckpt_list_free(paths, steps, n);
  return chosen >= 0 ? 0 : 1;
}

int cg_ckpt_inspect_main(int argc, char **argv) {
  if (argc != 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    FILE *o = argc == 2 ? stdout : stderr;
    fprintf(o, "usage: cogpu-dist inspect FILE|DIR\n\n"
               "Prints a checkpoint's header and verifies its CRCs (exit 0 valid, 1 not); of\n"
               "DIR/best or DIR/last, the checkpoint that pointer file names. For a\n"
               "directory, lists its checkpoints newest first with their verdict and validation\n"
               "figures, marks the ones DIR/last and DIR/best name, and says which one\n"
               "`train --resume` would load (exit 0 when one is usable). A path that does not\n"
               "exist, or a directory that cannot be listed, is exit 2.\n");
    return argc == 2 ? 0 : CG_EXIT_USAGE;
  }
  const char *arg = argv[1];
  if (!arg[0]) { /* an unset shell variable */
    fprintf(stderr, "cogpu-dist inspect: error: empty FILE|DIR\n");
    return CG_EXIT_USAGE;
  }
  struct stat sb;
  if (stat(arg, &sb) != 0) {
    fprintf(stderr, "cogpu-dist inspect: error: %s: %s\n", arg, strerror(errno));
    return CG_EXIT_USAGE;
  }
  if (!S_ISDIR(sb.st_mode) && !S_ISREG(sb.st_mode)) { /* a FIFO would block the reader */
    fprintf(stderr, "cogpu-dist inspect: error: %s is %s, not a checkpoint file or directory\n",
            arg, cg_afile_kind(sb.st_mode));
    return CG_EXIT_USAGE;
  }
  char target[4096];
  if (!S_ISDIR(sb.st_mode) && cg_ckpt_pointer_target(arg, target, sizeof target)) {
    printf("%s names %s\n", arg, target); /* DIR/best, DIR/last */
    return inspect_file(target);
  }
  return S_ISDIR(sb.st_mode) ? inspect_dir(arg) : inspect_file(arg);
}
