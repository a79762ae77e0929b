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

#include "backend.h"
#include "ckpt.h"
#include "data.h"
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

int cg_predict_run(int argc, char **argv, cg_comm_t *c) {
  popts_t o;
  char err[1024] = "";
  int rc = parse(argc, argv, &o, err, sizeof err);
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    if (c->rank == 0) usage(stdout);
    return 0;
  }
  /* The checkpoint's shape, then its weights. */
  cg_ckpt_info_t info;
  float *params = NULL, *mm = NULL, *vv = NULL;
  if (!rc && cg_ckpt_read(o.checkpoint, NULL, &info, NULL, NULL, NULL, err, sizeof err) != CG_CKPT_OK)
    rc = -1;
  cg_model_t model;
  if (!rc && cg_model_build(&model, info.shape.in_c, info.shape.base, info.shape.depth,
                            info.shape.height, info.shape.width, err, sizeof err))
    rc = -1;
  if (!rc && info.shape.in_c != 3 + CG_NFEAT) {
    snprintf(err, sizeof err, "checkpoint has %d input channels; this build feeds %d",
             info.shape.in_c, 3 + CG_NFEAT);
    rc = -1;
  }
  char **files = NULL;
  int nfiles = 0;
  if (!rc && list_pngs(o.input, &files, &nfiles, err, sizeof err)) rc = -1;
  if (!rc && nfiles == 0) {
    snprintf(err, sizeof err, "--input: no *.png files in '%.900s'", o.input);
    rc = -1;
  }
  if (!rc && c->rank == 0 && mkdir(o.output, 0755) && errno != EEXIST) {
    snprintf(err, sizeof err, "--output: cannot create '%.900s': %s", o.output, strerror(errno));
    rc = -1;
  }
  if (cg_comm_any(c, rc != 0)) {
    if (rc && c->rank == 0) fprintf(stderr, "cogpu-dist: error: %s\n", err);
    else if (rc) cg_log_info("%s", err);
    for (int i = 0; i < nfiles; i++) free(files[i]);
    free(files);
    return CG_EXIT_USAGE;
  }
  CG_CHECK_MPI(MPI_Barrier(c->world)); /* the output directory exists for every rank */
  const int S = info.shape.height, n = o.batch;
  params = cg_malloc(sizeof(float) * model.nparams, "weights");
  mm = cg_malloc(sizeof(float) * model.nparams, "m");
  vv = cg_malloc(sizeof(float) * model.nparams, "v");
  if (cg_ckpt_read(o.checkpoint, &info.shape, NULL, params, mm, vv, err, sizeof err) != CG_CKPT_OK)
    CG_FATAL("%s", err);
  free(mm);
  free(vv);
  /* backend: fp32 for predictions */
  const cg_backend_ops_t *ops = &cg_backend_cpu;
#ifdef COGPU_HAVE_CUDA
  char why[256];
  int usable = strcmp(o.backend, "cpu") ? cg_cuda_usable(why, sizeof why) : 0;
  if (!strcmp(o.backend, "cuda") && !usable) CG_FATAL("--backend cuda: no usable GPU (%s)", why);
  if (usable) ops = &cg_backend_cuda;
#else
  if (!strcmp(o.backend, "cuda")) CG_FATAL("--backend cuda: built without CUDA");
#endif
  cg_topo_t *topo = cg_topo_create(c, ops == &cg_backend_cpu ? CG_TOPO_GPU_NONE : CG_TOPO_GPU_AUTO);
  const cg_topo_plan_t *pl = cg_topo_plan(topo);
  cg_buckets_t bk;
  cg_buckets_plan(&model, 0, &bk);
  cg_backend_cfg_t bc = {0};
  bc.batch = n;
  bc.precision = CG_PREC_FP32;
  bc.threads = pl->ncpus;
  bc.device = pl->gpu >= 0 ? pl->gpu : c->local_rank;
  bc.buckets = &bk;
  bc.fault_nan_step = -1;
  cg_backend_t *be = NULL;
  if (ops->create(&model, &bc, &be, err, sizeof err)) CG_FATAL("backend %s: %s", ops->name, err);
  ops->set_params(be, params);
  if (c->rank == 0)
    printf("predict: %d image(s) from %s on %d rank(s), backend %s, model base %d depth %d at "
           "%dx%d (checkpoint %s, step %lld)\n",
           nfiles, o.input, c->size, ops->name, info.shape.base, info.shape.depth, S, S,
           o.checkpoint, (long long)info.step);
  size_t px = (size_t)S * S;
  float *x = cg_calloc(px * model.in_c * (size_t)n, sizeof(float), "batch");
  uint8_t *y = cg_calloc(px * (size_t)n, 1, "masks"), *pred = cg_calloc(px * (size_t)n, 1, "pred");
  float *wt = cg_calloc((size_t)n, sizeof(float), "weights");
  float *scratch = cg_malloc(sizeof(float) * 3 * px, "scratch");
  uint8_t *frgb = cg_malloc(px * 3, "fitted rgb"), *fmask = cg_malloc(px, "fitted mask");
  int *idx = cg_malloc(sizeof(int) * (size_t)n, "batch files");
  int *oh = cg_malloc(sizeof(int) * (size_t)n, "heights"), *ow = cg_malloc(sizeof(int) * (size_t)n, "widths");
  cg_confusion_t conf = {0, 0, 0, 0};
  int64_t done = 0;
  int failures = 0;
  /* rank r: files r, r + R, ...; every rank runs the same number of steps (padding) */
  int mine = (nfiles - c->rank + c->size - 1) / c->size;
  int steps_all = (nfiles + c->size - 1) / c->size;
  int nbatches = (steps_all + n - 1) / n;
  for (int bi = 0; bi < nbatches; bi++) {
    int real = 0;
    for (int j = 0; j < n; j++) {
      int k = bi * n + j; /* k-th file of this rank */
      idx[j] = k < mine ? c->rank + k * c->size : -1;
      float *xs = x + (size_t)j * px * model.in_c;
      uint8_t *ys = y + (size_t)j * px;
      wt[j] = 0;
      memset(ys, 0, px);
      if (idx[j] < 0) {
        memset(xs, 0, sizeof(float) * px * model.in_c);
        continue;
      }
      char path[2200], mpath[2200];
      snprintf(path, sizeof path, "%s/%s", o.input, files[idx[j]]);
      snprintf(mpath, sizeof mpath, "%s/%s", o.masks, files[idx[j]]);
      int h = 0, w = 0;
      /* decoded row by row into the model's size; a bad input file ends the job (exit 2) */
      if (cg_fit_png(path, o.masks[0] ? mpath : NULL, o.max_pixels, S, 0, 0, frgb, fmask, &h, &w,
                     err, sizeof err))
        cg_die(CG_EXIT_USAGE, "predict: %s", err);
      cg_pack_input(frgb, S, S, CG_NFEAT, scratch, xs);
      memcpy(ys, fmask, px);
      oh[j] = h;
      ow[j] = w;
      wt[j] = 1.0f;
      real++;
    }
    cg_batch_t batch = {n, S, S, model.in_c, x, y, wt, n, NULL, pred, 0};
    ops->upload(be, 0, &batch);
    ops->eval_step(be, 0);
    cg_step_out_t out;
    ops->fetch(be, &out);
    for (int j = 0; j < n; j++) {
      if (idx[j] < 0) continue;
      const uint8_t *pj = out.pred + (size_t)j * px;
      if (o.masks[0]) cg_confusion_add(&conf, pj, y + (size_t)j * px, px);
      uint8_t *full = cg_malloc((size_t)oh[j] * ow[j], "output mask");
      unfit_mask(pj, S, oh[j], ow[j], full);
      char path[2200];
      snprintf(path, sizeof path, "%s/%s", o.output, files[idx[j]]);
      if (cg_png_write(path, full, oh[j], ow[j], CG_PNG_GRAY8, err, sizeof err)) {
        cg_log_warn("%s", err);
        failures++;
      }
      free(full);
      done++;
    }
    (void)real;
  }
  int64_t counts[6] = {conf.tp, conf.fp, conf.fn, conf.tn, done, failures};
  cg_comm_sum_i64(c, counts, 6);
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
  free(x);
  free(y);
  free(pred);
  free(wt);
  free(scratch);
  free(frgb);
  free(fmask);
  free(idx);
  free(oh);
  free(ow);
  return counts[5] ? 1 : 0;
}
