/* predict.c: `cogpu-dist predict` — run a trained model on PNG images.
 *
 *   mpirun -np N cogpu-dist predict --checkpoint FILE --input DIR --output DIR [--masks DIR]
 *
 * Every rank loads the checkpoint and takes every N-th image (data-parallel); each image is
 * fitted to the model's image size as in training (shorter side scaled, longer side
 * centre-cropped: cg_fit_png, decoded row by row), featurised like a training sample, and
 * predicted on the chosen backend. The mask written to DIR/NAME.png (8-bit gray, 255 = foreground) has the
 * image's original size: the prediction is scaled back onto the centred square it was taken
 * from (nearest neighbour), and the cropped margins of a non-square image are 0. With --masks,
 * IoU, Dice and pixel accuracy are computed exactly like validation (at the model's size,
 * against the fitted mask, counts summed over ranks). */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend_choose.h"
#include "ckpt.h"
#include "feat.h"
#include "log.h"
#include "metrics.h"
#include "model.h"
#include "png_io.h"
#include "predict.h"
#include "source.h"
#include "topo.h"

typedef struct {
  char checkpoint[1024], input[1024], output[1024], masks[1024];
  char backend[8];
  int batch;
  int64_t max_pixels; /* --max-image-pixels */
} popts_t;

static void usage(FILE *f) {
  fprintf(f,
          "usage: mpirun -np N cogpu-dist predict --checkpoint FILE --input DIR --output DIR\n"
          "                                        [--masks DIR] [--backend auto|cpu|cuda] [--batch N]\n"
          "  runs the model of a checkpoint on every DIR/*.png and writes the predicted masks as\n"
          "  8-bit gray PNGs (255 = foreground) of the same names and sizes to the output directory;\n"
          "  with --masks (masks of the same names) prints IoU, Dice and pixel accuracy.\n"
          "  --backend   auto (cuda when usable), cpu or cuda [auto]; computes in fp32\n"
          "  --batch     images per step per rank [8]\n"
          "  --max-image-pixels N  an image of more pixels (width x height, from its header) is\n"
          "              refused before anything is allocated [%lld, Pillow's bomb limit]; images\n"
          "              are decoded row by row into the model's size\n",
          (long long)CG_PNG_DEFAULT_MAX_PIXELS);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted *.png names of dir (without the directory). */
static int list_pngs(const char *dir, char ***out, int *n, char *err, size_t errlen) {
  DIR *d = opendir(dir);
  if (!d) {
    snprintf(err, errlen, "--input: cannot open directory '%.900s': %s", dir, strerror(errno));
    return -1;
  }
  int cap = 64;
  char **v = cg_malloc(sizeof(char *) * (size_t)cap, "file list");
  *n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t l = strlen(e->d_name);
    if (l < 5 || strcmp(e->d_name + l - 4, ".png")) continue;
    if (*n == cap) {
      cap *= 2;
      char **nv = realloc(v, sizeof(char *) * (size_t)cap);
      if (!nv) CG_FATAL("out of memory listing %s", dir);
      v = nv;
    }
    v[(*n)++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(v, (size_t)*n, sizeof(char *), cmp_str);
  *out = v;
  return 0;
}

static int parse(int argc, char **argv, popts_t *o, char *err, size_t errlen) {
  memset(o, 0, sizeof *o);
  snprintf(o->backend, sizeof o->backend, "auto");
  o->batch = 8;
  o->max_pixels = CG_PNG_DEFAULT_MAX_PIXELS;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    char *dst = NULL;
    size_t len = 0;
    if (!strcmp(a, "--checkpoint")) dst = o->checkpoint, len = sizeof o->checkpoint;
    else if (!strcmp(a, "--input")) dst = o->input, len = sizeof o->input;
    else if (!strcmp(a, "--output")) dst = o->output, len = sizeof o->output;
    else if (!strcmp(a, "--masks")) dst = o->masks, len = sizeof o->masks;
    else if (!strcmp(a, "--backend")) dst = o->backend, len = sizeof o->backend;
    else if (!strcmp(a, "--batch")) {
      if (!v || atoi(v) < 1 || atoi(v) > 4096) {
        snprintf(err, errlen, "--batch: %s is out of range 1..4096", v ? v : "missing value");
        return -1;
      }
      o->batch = atoi(v);
      i++;
      continue;
    } else if (!strcmp(a, "--max-image-pixels")) {
      char *end = NULL;
      long long n = v ? strtoll(v, &end, 10) : 0;
      if (!v || *end || n < 1 || n > 1073741824LL) {
        snprintf(err, errlen, "--max-image-pixels: %s is out of range 1..1073741824",
                 v ? v : "missing value");
        return -1;
      }
      o->max_pixels = n;
      i++;
      continue;
    } else {
      snprintf(err, errlen, "unknown option %s for 'predict' (see cogpu-dist predict --help)", a);
      return -1;
    }
    if (!v) {
      snprintf(err, errlen, "%s: missing value", a);
      return -1;
    }
    snprintf(dst, len, "%s", v);
    i++;
  }
  if (strcmp(o->backend, "auto") && strcmp(o->backend, "cpu") && strcmp(o->backend, "cuda")) {
    snprintf(err, errlen, "--backend: '%s' is not one of auto|cpu|cuda", o->backend);
    return -1;
  }
  if (!o->checkpoint[0] || !o->input[0] || !o->output[0]) {
    snprintf(err, errlen, "predict needs --checkpoint FILE, --input DIR and --output DIR");
    return -1;
  }
  return 0;
}

/* The predicted mask (s x s, 0/1) scaled back onto the centred square of an h x w image. */
static void unfit_mask(const uint8_t *pred, int s, int h, int w, uint8_t *out) {
  int m = h < w ? h : w, ox = (w - m) / 2, oy = (h - m) / 2;
  memset(out, 0, (size_t)h * w);
  for (int y = 0; y < m; y++) {
    int sy = (int)((int64_t)y * s / m);
    for (int x = 0; x < m; x++) {
      int sx = (int)((int64_t)x * s / m);
      out[(size_t)(y + oy) * w + x + ox] = pred[(size_t)sy * s + sx] ? 255 : 0;
    }
  }
}

/* The checks made before anything large is allocated, each rank for itself: the checkpoint's
 * header and model, the input files, the output directory (rank 0 makes it) and the backend.
 * 0, or -1 with err (a usage error). */
static int check_inputs(const popts_t *o, const cg_comm_t *c, cg_ckpt_info_t *info,
                        cg_model_t *model, char ***files, int *nfiles, cg_backend_choice_t *bk,
                        char *err, size_t errlen) {
  if (cg_ckpt_read(o->checkpoint, NULL, info, NULL, NULL, NULL, err, errlen) != CG_CKPT_OK)
    return -1;
  if (cg_model_build(model, info->shape.in_c, info->shape.base, info->shape.depth,
                     info->shape.height, info->shape.width, err, errlen))
    return -1;
  if (info->shape.in_c != 3 + CG_NFEAT) {
    snprintf(err, errlen, "checkpoint has %d input channels; this build feeds %d",
             info->shape.in_c, 3 + CG_NFEAT);
    return -1;
  }
  if (list_pngs(o->input, files, nfiles, err, errlen)) return -1;
  if (*nfiles == 0) {
    snprintf(err, errlen, "--input: no *.png files in '%.900s'", o->input);
    return -1;
  }
  if (c->rank == 0 && mkdir(o->output, 0755) && errno != EEXIST) {
    snprintf(err, errlen, "--output: cannot create '%.900s': %s", o->output, strerror(errno));
    return -1;
  }
  /* fp32 for predictions; each rank takes its own GPU or none (no collectives in the steps) */
  return cg_backend_choose(o->backend, "fp32", NULL, NULL, bk, err, errlen);
}

/* One batch of images on the host: the model's input and masks as they were fitted, and each
 * image's file and original size. */
typedef struct {
  int n, s, in_c;
  size_t px;               /* s * s */
  float *x, *wt, *scratch; /* n x s x s x in_c; n; 3 x px */
  uint8_t *y, *pred;       /* n x px */
  uint8_t *frgb, *fmask;   /* one fitted image: px x 3, px */
  int *idx, *oh, *ow;      /* n: file index (-1 padding), original height and width */
} pbatch_t;

static void batch_alloc(pbatch_t *b, int n, int s, int in_c) {
  b->n = n;
  b->s = s;
  b->in_c = in_c;
  b->px = (size_t)s * s;
  b->x = cg_calloc(b->px * in_c * (size_t)n, sizeof(float), "batch");
  b->y = cg_calloc(b->px * (size_t)n, 1, "masks");
  b->pred = cg_calloc(b->px * (size_t)n, 1, "pred");
  b->wt = cg_calloc((size_t)n, sizeof(float), "weights");
  b->scratch = cg_malloc(sizeof(float) * 3 * b->px, "scratch");
  b->frgb = cg_malloc(b->px * 3, "fitted rgb");
  b->fmask = cg_malloc(b->px, "fitted mask");
  b->idx = cg_malloc(sizeof(int) * (size_t)n, "batch files");
  b->oh = cg_malloc(sizeof(int) * (size_t)n, "heights");
  b->ow = cg_malloc(sizeof(int) * (size_t)n, "widths");
}

static void batch_free(pbatch_t *b) {
  free(b->x);
  free(b->y);
  free(b->pred);
  free(b->wt);
  free(b->scratch);
  free(b->frgb);
  free(b->fmask);
  free(b->idx);
  free(b->oh);
  free(b->ow);
}

/* Batch bi of this rank: its files r, r + R, ... (mine of them); padding past the end. Each
 * image is decoded row by row into the model's size; a bad input file ends the job (exit 2). */
static void fill_batch(pbatch_t *b, const popts_t *o, char **files, int bi, int mine,
                       const cg_comm_t *c) {
  char err[1024];
  for (int j = 0; j < b->n; j++) {
    int k = bi * b->n + j; /* k-th file of this rank */
    b->idx[j] = k < mine ? c->rank + k * c->size : -1;
    float *xs = b->x + (size_t)j * b->px * b->in_c;
    uint8_t *ys = b->y + (size_t)j * b->px;
    b->wt[j] = 0;
    memset(ys, 0, b->px);
    if (b->idx[j] < 0) {
      memset(xs, 0, sizeof(float) * b->px * b->in_c);
      continue;
    }
    char path[2200], mpath[2200];
    snprintf(path, sizeof path, "%s/%s", o->input, files[b->idx[j]]);
    snprintf(mpath, sizeof mpath, "%s/%s", o->masks, files[b->idx[j]]);
    int h = 0, w = 0;
    if (cg_fit_png(path, o->masks[0] ? mpath : NULL, o->max_pixels, b->s, 0, 0, b->frgb,
                   b->fmask, &h, &w, err, sizeof err))
      cg_die(CG_EXIT_USAGE, "predict: %s", err);
    cg_pack_input(b->frgb, b->s, b->s, CG_NFEAT, b->scratch, xs);
    memcpy(ys, b->fmask, b->px);
    b->oh[j] = h;
    b->ow[j] = w;
    b->wt[j] = 1.0f;
  }
}

/* The batch's predictions (pred: n x px) as masks of the images' sizes; with --masks, counted
 * into conf. Returns the number of failed writes (warned); *done counts the masks. */
static int write_masks(const pbatch_t *b, const uint8_t *pred, const popts_t *o, char **files,
                       cg_confusion_t *conf, int64_t *done) {
  int failures = 0;
  char err[1024];
  for (int j = 0; j < b->n; j++) {
    if (b->idx[j] < 0) continue;
    const uint8_t *pj = pred + (size_t)j * b->px;
    if (o->masks[0]) cg_confusion_add(conf, pj, b->y + (size_t)j * b->px, b->px);
    uint8_t *full = cg_malloc((size_t)b->oh[j] * b->ow[j], "output mask");
    unfit_mask(pj, b->s, b->oh[j], b->ow[j], full);
    char path[2200];
    snprintf(path, sizeof path, "%s/%s", o->output, files[b->idx[j]]);
    if (cg_png_write(path, full, b->oh[j], b->ow[j], CG_PNG_GRAY8, err, sizeof err)) {
      cg_log_warn("%s", err);
      failures++;
    }
    free(full);
    (*done)++;
  }
  return failures;
}

/* Every batch of this rank through the backend; counts summed over ranks into counts[6]:
 * tp, fp, fn, tn, masks written, failed writes. */
static void predict_all(const cg_backend_ops_t *ops, cg_backend_t *be, const popts_t *o,
                        char **files, int nfiles, const cg_model_t *model, const cg_comm_t *c,
                        int64_t counts[6]) {
  pbatch_t b;
  batch_alloc(&b, o->batch, model->height, model->in_c);
  cg_confusion_t conf = {0, 0, 0, 0};
  int64_t done = 0;
  int failures = 0;
  /* rank r: files r, r + R, ...; every rank runs the same number of steps (padding) */
  int mine = (nfiles - c->rank + c->size - 1) / c->size;
  int steps_all = (nfiles + c->size - 1) / c->size;
  int nbatches = (steps_all + b.n - 1) / b.n;
  for (int bi = 0; bi < nbatches; bi++) {
    fill_batch(&b, o, files, bi, mine, c);
    cg_batch_t batch = {b.n, b.s, b.s, b.in_c, b.x, b.y, b.wt, b.n, NULL, b.pred, 0};
    ops->upload(be, 0, &batch);
    ops->eval_step(be, 0);
    cg_step_out_t out;
    ops->fetch(be, &out);
    failures += write_masks(&b, out.pred, o, files, &conf, &done);
  }
  batch_free(&b);
  int64_t sums[6] = {conf.tp, conf.fp, conf.fn, conf.tn, done, failures};
  cg_comm_sum_i64(c, sums, 6);
  memcpy(counts, sums, sizeof sums);
}

int cg_predict_run(int argc, char **argv, cg_comm_t *c) {
  popts_t o;
  char err[1024] = "";
  int rc = parse(argc, argv, &o, err, sizeof err);
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    if (c->rank == 0) usage(stdout);
    return 0;
  }
  cg_ckpt_info_t info;
  cg_model_t model;
  cg_backend_choice_t bk;
  char **files = NULL;
  int nfiles = 0;
  if (!rc) rc = check_inputs(&o, c, &info, &model, &files, &nfiles, &bk, err, sizeof err);
  if (cg_comm_any(c, rc != 0)) {
    if (rc && c->rank == 0) fprintf(stderr, "cogpu-dist: error: %s\n", err);
    else if (rc) cg_log_info("%s", err);
    for (int i = 0; i < nfiles; i++) free(files[i]);
    free(files);
    return CG_EXIT_USAGE;
  }
  CG_CHECK_MPI(MPI_Barrier(c->world)); /* the output directory exists for every rank */
  const int S = info.shape.height;
  float *params = cg_malloc(sizeof(float) * model.nparams, "weights");
  float *mm = cg_malloc(sizeof(float) * model.nparams, "m");
  float *vv = cg_malloc(sizeof(float) * model.nparams, "v");
  if (cg_ckpt_read(o.checkpoint, &info.shape, NULL, params, mm, vv, err, sizeof err) != CG_CKPT_OK)
    CG_FATAL("%s", err);
  free(mm);
  free(vv);
  const cg_backend_ops_t *ops = bk.ops;
  cg_topo_t *topo = cg_topo_create(c, bk.is_cuda ? CG_TOPO_GPU_AUTO : CG_TOPO_GPU_NONE);
  const cg_topo_plan_t *pl = cg_topo_plan(topo);
  cg_buckets_t bkts;
  cg_buckets_plan(&model, 0, &bkts);
  cg_backend_cfg_t bc = {0};
  bc.batch = o.batch;
  bc.precision = bk.precision;
  bc.threads = pl->ncpus;
  bc.device = pl->gpu >= 0 ? pl->gpu : c->local_rank;
  bc.buckets = &bkts;
  bc.fault_nan_step = -1;
  cg_backend_t *be = NULL;
  if (ops->create(&model, &bc, &be, err, sizeof err)) CG_FATAL("backend %s: %s", ops->name, err);
  ops->set_params(be, params);
  if (c->rank == 0)
    printf("predict: %d image(s) from %s on %d rank(s), backend %s, model base %d depth %d at "
           "%dx%d (checkpoint %s, step %lld)\n",
           nfiles, o.input, c->size, ops->name, info.shape.base, info.shape.depth, S, S,
           o.checkpoint, (long long)info.step);
  int64_t counts[6];
  predict_all(ops, be, &o, files, nfiles, &model, c, counts);
  if (c->rank == 0) {
    printf("predict: wrote %lld mask(s) to %s%s\n", (long long)counts[4], o.output,
           counts[5] ? " (some writes failed)" : "");
    if (o.masks[0]) {
      cg_confusion_t t = {counts[0], counts[1], counts[2], counts[3]};
      printf("predict: IoU %.6f  Dice %.6f  accuracy %.6f  (%lld images, at %dx%d)\n",
             cg_confusion_iou(&t), cg_confusion_dice(&t), cg_confusion_acc(&t),
             (long long)counts[4], S, S);
    }
    fflush(stdout);
  }
  ops->destroy(be);
  cg_topo_destroy(topo);
  for (int i = 0; i < nfiles; i++) free(files[i]);
  free(files);
  free(params);
  return counts[5] ? 1 : 0;
}
