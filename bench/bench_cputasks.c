/* bench_cputasks.c: `cogpu-bench cpu-tasks` — the CPU task pool on its real work.
 *
 * N independent tasks, each the work a helper does for one sample: load (generate the
 * synthetic image, or decode and fit an image pair / read a shard record with --data; --crop:
 * a training crop window instead of the fit, as train loads it), flips, features and
 * normalisation into the packed input. bench/peer_decode.py does the same loads in Pillow. Run on 1..all of the rank's
 * cores (topology/), each thread pinned to its own core, and again unpinned; tasks/s, speed-up
 * over one thread and parallel efficiency per thread count. The packed outputs are checked
 * against a single-threaded pass before timing (they must be bitwise equal).
 *
 * --formats adds a table of the same task over one set of synthetic samples stored five ways:
 * a PNG directory, a JPEG directory (quality 90), and .cgds shards packed raw, png and jpeg
 * (written to a temporary directory, removed after): bytes per sample on disk and tasks/s on 1
 * thread and on all cores, i.e. what each format costs the helpers. */
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "augment.h"
#include "cgds.h"
#include "feat.h"
#include "jpeg_io.h"
#include "loader.h" /* cg_loader_load_window: --crop-cat-max */
#include "log.h"
#include "png_io.h"
#include "source.h"
#include "synth.h"
#include "topo.h"

typedef struct {
  cg_source_t *src;
  int size, ntasks;
  atomic_int next;
  float *out;       /* ntasks outputs of size*size*5 floats (check pass) or NULL */
  const int *cpus;  /* pin thread i to cpus[i], or NULL */
  const cg_topo_t *topo;
  int pin;
  int crop;         /* load a training crop window (over the whole file) */
  double lo, hi;    /* --crop-scale: the windows' side, of the shorter side (above 1: padded) */
  double cat_max;   /* --crop-cat-max: < 1, windows placed by train's rule (cg_loader_*) */
  atomic_llong refused; /* windows it refused, over every run since it was zeroed */
  long long tasks;      /* the tasks of those runs */
} pool_t;

typedef struct {
  pool_t *p;
  int id;
} targ_t;

static void *worker(void *arg) {
  targ_t *a = arg;
  pool_t *p = a->p;
  if (p->pin) cg_topo_pin_thread(p->topo, a->id);
  size_t px = (size_t)p->size * p->size;
  uint8_t *rgb = cg_malloc(px * 3, "rgb"), *mask = cg_malloc(px, "mask");
  float *scratch = cg_malloc(sizeof(float) * 3 * px, "scratch");
  uint8_t *tmp = cg_malloc(px * 4, "crop scratch");
  float *x = cg_malloc(sizeof(float) * px * 5, "x");
  char err[512];
  for (;;) {
    int t = atomic_fetch_add(&p->next, 1);
    if (t >= p->ntasks) break;
    int64_t idx = t % p->src->count;
    cg_crop_t win;
    if (p->crop) {
      win = cg_augment_window(7, 0, idx, p->lo, p->hi);
      win.pad = 255; /* a zoom-out window's padding: the ignore label, as train sets it */
      int r;
      if (cg_loader_load_window(p->src, 7, 0, idx, 255, p->cat_max, &win, rgb, mask, tmp, &r,
                                err, sizeof err))
        CG_FATAL("%s", err);
      atomic_fetch_add(&p->refused, r);
    } else if (cg_source_load(p->src, idx, rgb, mask, err, sizeof err)) {
      CG_FATAL("%s", err);
    }
    cg_augment_flip(7, 0, idx, p->size, p->size, rgb, mask, CG_FLIP_HV);
    cg_pack_input(rgb, p->size, p->size, CG_NFEAT, scratch, p->out ? p->out + (size_t)t * px * 5 : x);
  }
  free(rgb);
  free(mask);
  free(scratch);
  free(tmp);
  free(x);
  return NULL;
}

static double run_pool(pool_t *p, int threads) {
  pthread_t th[CG_TOPO_MAX_CPUS];
  targ_t args[CG_TOPO_MAX_CPUS];
  atomic_store(&p->next, 0);
  p->tasks += p->ntasks;
  double t0 = cg_now();
  for (int i = 0; i < threads; i++) {
    args[i].p = p;
    args[i].id = i;
    if (pthread_create(&th[i], NULL, worker, &args[i])) CG_FATAL("pthread_create");
  }
  for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
  return cg_now() - t0;
}

typedef struct {
  const char *data;
  int size, ntasks;
  int64_t max_pixels;
  const char *json_out;
  int formats;
  int crop;
  const char *crop_scale;
  double crop_cat_max;
  char exif[8]; /* --exif-orientation */
} opts_t;

#define F(f) CG_OPT_FIELD(opts_t, f)
static const cg_opt_t g_opts[] = {
    CG_OPT_ROW_TEXT(PTR, "data", F(data), NULL, 0, "SRC",
        "samples: synthetic, an image directory, a LIST of pairs or a .cgds shard (as train "
        "--data)"),
    CG_OPT_ROW_NUM(INT, "image-size", F(size), 1, 8192, 0, "N", "samples are N x N"),
    CG_OPT_ROW_NUM(INT, "tasks", F(ntasks), 0, 1e9, 0, "N",
        "tasks per run; 0 = by the image size (4000, 600 or 150), at least 2 per core"),
    CG_OPT_ROW_NUM(I64, "max-image-pixels", F(max_pixels), 1, 1073741824, 0, "N",
        "larger PNGs are refused from their header"),
    CG_OPT_ROW_TEXT(STR, "exif-orientation", F(exif), "stored|apply", 0, "E",
        "image files: a JPEG's EXIF orientation applied or not, as train's flag"),
    CG_BENCH_OPT_JSON_OUT(opts_t),
    CG_OPT_ROW_FLAG("formats", F(formats), 0,
        "also time PNG vs JPEG directories and raw/png/jpeg shards of the same samples"),
    CG_OPT_ROW_FLAG("crop", F(crop), 0,
        "each task loads a training crop window (--crop-scale, over the whole file, or a "
        "shard's record) instead of the fitted square"),
    CG_OPT_ROW_TEXT(PTR, "crop-scale", F(crop_scale), NULL, 0, "A:B",
        "--crop: the windows' side, uniform in A..B of the shorter side (as train's; above 1 "
        "zoomed out and padded)"),
    CG_OPT_ROW_NUM(DBL, "crop-cat-max", F(crop_cat_max), 0.001, 1, 0, "R",
        "--crop: windows placed as train --crop-cat-max R places them (masks read as binary, "
        "255 ignored); the header says how many each task refused; 1 = off"),
};
static const opts_t g_defaults = {"synthetic", 256, 0, CG_PNG_DEFAULT_MAX_PIXELS, NULL, 0, 0,
                                  "0.75:1", 1, "stored"};

/* --crop-scale A:B into lo, hi: 0, or -1 (said on stderr). */
static int crop_range(const opts_t *o, double *lo, double *hi) {
  char tail = 0;
  if (sscanf(o->crop_scale, "%lf:%lf%c", lo, hi, &tail) == 2 && *lo > 0 && *hi >= *lo &&
      *hi <= CG_CROP_SCALE_MAX)
    return 0;
  fprintf(stderr,
          "cogpu-bench cpu-tasks: error: --crop-scale: '%s' is not A:B with 0 < A <= B <= %g\n",
          o->crop_scale, CG_CROP_SCALE_MAX);
  return -1;
}

/* ---- --formats ------------------------------------------------------------------------- */

#define FMT_SAMPLES 64

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(p);
}

static uint64_t dir_bytes(const char *dir) {
  char cmd[1300];
  snprintf(cmd, sizeof cmd, "du -sb %s", dir); /* apparent size: bytes of the files */
  FILE *f = popen(cmd, "r");
  unsigned long long n = 0;
  if (f) {
    if (fscanf(f, "%llu", &n) != 1) n = 0;
    pclose(f);
  }
  return n;
}

/* FMT_SAMPLES synthetic samples as T/png and T/jpg directories (masks PNG). */
static int write_dirs(const char *t, int size, char *err, size_t errlen) {
  const char *sub[] = {"png", "png/images", "png/masks", "jpg", "jpg/images", "jpg/masks"};
  char p[1200];
  for (int i = 0; i < 6; i++) {
    snprintf(p, sizeof p, "%s/%s", t, sub[i]);
    if (mkdir(p, 0755)) {
      snprintf(err, errlen, "%.900s: cannot create", p);
      return -1;
    }
  }
  const size_t px = (size_t)size * size;
  uint8_t *rgb = cg_malloc(px * 3, "rgb"), *mask = cg_malloc(px, "mask");
  int rc = 0;
  for (int i = 0; i < FMT_SAMPLES && !rc; i++) {
    cg_synth_sample(1, i, size, size, rgb, mask);
    for (size_t k = 0; k < px; k++) mask[k] = mask[k] ? 255 : 0;
    snprintf(p, sizeof p, "%s/png/images/%06d.png", t, i);
    rc |= cg_png_write(p, rgb, size, size, CG_PNG_RGB8, err, errlen);
    snprintf(p, sizeof p, "%s/jpg/images/%06d.jpg", t, i);
    rc |= rc ? rc : cg_jpeg_write(p, rgb, size, size, 90, err, errlen);
    snprintf(p, sizeof p, "%s/png/masks/%06d.png", t, i);
    rc |= rc ? rc : cg_png_write(p, mask, size, size, CG_PNG_GRAY8, err, errlen);
    snprintf(p, sizeof p, "%s/jpg/masks/%06d.png", t, i);
    rc |= rc ? rc : cg_png_write(p, mask, size, size, CG_PNG_GRAY8, err, errlen);
  }
  free(rgb);
  free(mask);
  return rc ? -1 : 0;
}

static void run_formats(const opts_t *o, const cg_topo_t *topo, int ncores) {
  char t[] = "/tmp/cg_formats_XXXXXX", err[1024], im[600], mk[600];
  if (!mkdtemp(t)) {
    fprintf(stderr, "cogpu-bench cpu-tasks: --formats: mkdtemp failed\n");
    return;
  }
  if (write_dirs(t, o->size, err, sizeof err)) {
    fprintf(stderr, "cogpu-bench cpu-tasks: --formats: %s\n", err);
    nftw(t, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return;
  }
  snprintf(im, sizeof im, "%s/png/images", t);
  snprintf(mk, sizeof mk, "%s/png/masks", t);
  static const char *const enc_name[] = {"raw", "jpeg", "png"};
  for (int e = 0; e < 3; e++) {
    char out[600];
    snprintf(out, sizeof out, "%s/%s.cgds", t, enc_name[e]);
    const cg_cgds_pack_opts_t po = {o->size, o->max_pixels, (cg_cgds_enc_t)e, 90, 0, 1, -1, NULL,
                                    0, CG_EXIF_STORED};
    if (cg_cgds_pack_opts(im, mk, out, &po, NULL, NULL, err, sizeof err))
      fprintf(stderr, "cogpu-bench cpu-tasks: --formats: %s\n", err);
  }
  const char *const names[] = {"png-dir", "jpeg-dir", "raw-shard", "png-shard", "jpeg-shard"};
  const char *const rel[] = {"png", "jpg", "raw.cgds", "png.cgds", "jpeg.cgds"};
  printf("# formats: the same %d synthetic %dx%d samples (jpeg: quality 90), %d tasks per run\n",
         FMT_SAMPLES, o->size, o->size, o->ntasks > 0 ? o->ntasks : 4 * FMT_SAMPLES);
  printf("# %-11s %14s %16s %16s\n", "format", "bytes/sample", "tasks/s 1 thr", "tasks/s all");
  for (int f = 0; f < 5; f++) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", t, rel[f]);
    const cg_source_opts_t so = {.size = o->size, .max_pixels = o->max_pixels};
    cg_source_t *src = cg_source_open_opts(p, &so, err, sizeof err);
    if (!src) {
      fprintf(stderr, "cogpu-bench cpu-tasks: --formats: %s\n", err);
      continue;
    }
    pool_t pl = {src, o->size, o->ntasks > 0 ? o->ntasks : 4 * FMT_SAMPLES, 0, NULL, NULL, topo, 1,
                 o->crop, 0, 0, o->crop_cat_max, 0, 0};
    crop_range(o, &pl.lo, &pl.hi); /* checked by cputasks_run */
    run_pool(&pl, 1); /* warm the page cache */
    const double t1 = pl.ntasks / run_pool(&pl, 1), tn = pl.ntasks / run_pool(&pl, ncores);
    printf("  %-11s %14.0f %16.1f %16.1f\n", names[f], (double)dir_bytes(p) / FMT_SAMPLES, t1, tn);
    cg_source_destroy(src);
  }
  nftw(t, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static int cputasks_run(const void *arg, cg_comm_t *c) {
  const opts_t *o = arg;
  const char *data = o->data, *json_out = o->json_out;
  int size = o->size, ntasks = o->ntasks;
  const int64_t max_pixels = o->max_pixels;
  cg_topo_t *topo = cg_topo_create(c, CG_TOPO_GPU_NONE);
  const cg_topo_plan_t *pl = cg_topo_plan(topo);
  int ncores = pl->ncpus;
  if (c->rank != 0) {
    cg_topo_destroy(topo);
    return 0;
  }
  char err[512];
  double lo, hi;
  if (crop_range(o, &lo, &hi)) {
    cg_topo_destroy(topo);
    return 2;
  }
  const cg_source_opts_t so = {.size = size, .max_pixels = max_pixels, .seed = 1,
                               .synthetic_count = 4096, .shard_labels = 1,
                               .exif = !strcmp(o->exif, "apply") ? CG_EXIF_APPLY
                                                                 : CG_EXIF_STORED};
  cg_source_t *src = cg_source_open_opts(data, &so, err, sizeof err);
  if (!src) {
    fprintf(stderr, "cogpu-bench cpu-tasks: %s\n", err);
    cg_topo_destroy(topo);
    return 2;
  }
  if (ntasks <= 0) ntasks = size <= 64 ? 4000 : (size <= 256 ? 600 : 150);
  if (ntasks < 2 * ncores) ntasks = 2 * ncores;
  /* check: the pool's outputs equal a single-threaded pass, bitwise */
  size_t per = (size_t)size * size * 5;
  int nchk = ncores * 2 < ntasks ? ncores * 2 : ntasks;
  pool_t p = {src, size, nchk, 0, NULL, NULL, topo, 0, o->crop, lo, hi, o->crop_cat_max, 0, 0};
  p.out = cg_malloc(sizeof(float) * per * nchk, "check out");
  run_pool(&p, 1);
  float *ref = p.out;
  p.out = cg_malloc(sizeof(float) * per * nchk, "check out 2");
  run_pool(&p, ncores);
  int bad = memcmp(ref, p.out, sizeof(float) * per * nchk) != 0;
  free(ref);
  free(p.out);
  p.out = NULL;
  p.ntasks = ntasks;
  char what[128] = "", cat[32] = "";
  if (o->crop && o->crop_cat_max < 1)
    snprintf(cat, sizeof cat, ", --crop-cat-max %g", o->crop_cat_max);
  if (o->crop) snprintf(what, sizeof what, " (crop windows %g:%g%s)", lo, hi, cat);
  atomic_store(&p.refused, 0); /* counted over the runs below, warm-ups and timed ones */
  p.tasks = 0;
  printf("# cogpu-bench cpu-tasks: %s %dx%d%s, %d tasks per run, rank 0's %d core(s); outputs "
         "%s\n", src->ops->kind, size, size, what, ntasks, ncores,
         bad ? "DIFFER between 1 and N threads" : "bitwise equal for 1 and N threads");
  printf("# %-8s %-9s %12s %10s %9s %12s\n", "threads", "pinning", "tasks/s", "speed-up",
         "effic.", "ms/task/core");
  int counts[64], nc = 0;
  for (int t = 1; t < ncores && nc < 62; t *= 2) counts[nc++] = t;
  counts[nc++] = ncores;
  double base[2] = {0, 0};
  char js[8192];
  size_t len = (size_t)snprintf(js, sizeof js,
                                "{\"bench\": \"cpu-tasks\", \"source\": \"%s\", \"size\": %d, "
                                "\"cores\": %d, \"check_ok\": %s, \"crop\": %s, "
                                "\"crop_scale\": \"%g:%g\", \"rows\": [",
                                src->ops->kind, size, ncores, bad ? "false" : "true",
                                o->crop ? "true" : "false", lo, hi);
  int first = 1;
  for (int pin = 1; pin >= 0; pin--)
    for (int i = 0; i < nc; i++) {
      p.pin = pin;
      run_pool(&p, counts[i] < 2 ? 1 : 2); /* warm caches and page tables */
      double dt = run_pool(&p, counts[i]);
      double tps = ntasks / dt;
      if (i == 0) base[pin] = tps;
      double sp = tps / base[pin];
      printf("  %-8d %-9s %12.1f %10.2f %8.0f%% %12.3f\n", counts[i], pin ? "pinned" : "unpinned",
             tps, sp, 100.0 * sp / counts[i], 1e3 * counts[i] / tps);
      len += (size_t)snprintf(js + len, sizeof js - len,
                              "%s{\"threads\": %d, \"pinned\": %s, \"tasks_per_s\": %.2f, "
                              "\"speedup\": %.3f, \"efficiency\": %.3f}",
                              first ? "" : ", ", counts[i], pin ? "true" : "false", tps, sp,
                              sp / counts[i]);
      first = 0;
    }
  char refused[64] = "null";
  if (o->crop && o->crop_cat_max < 1) {
    const double per_task = (double)atomic_load(&p.refused) / (double)p.tasks;
    printf("# --crop-cat-max %g: %.2f windows refused a task, over the %lld tasks of the runs "
           "above and their warm-ups (%lld samples)\n", o->crop_cat_max, per_task, p.tasks,
           (long long)src->count);
    snprintf(refused, sizeof refused, "%.4f", per_task);
  }
  snprintf(js + len, sizeof js - len, "], \"crop_cat_max\": %g, \"windows_refused_per_task\": %s}",
           o->crop_cat_max, refused);
  cg_bench_write_json(json_out, js);
  if (o->formats) run_formats(o, topo, ncores);
  cg_source_destroy(src);
  cg_topo_destroy(topo);
  return bad ? 1 : 0;
}

const cg_bench_t cg_bench_cputasks = {
    .name = "cpu-tasks",
    .summary = "helper-task throughput on 1..all cores, pinned and unpinned",
    .about = "  helper-task throughput (load + augment + features + pack of one sample) on 1..all\n"
             "  of the rank's cores, pinned and unpinned: tasks/s, speed-up, efficiency",
    CG_BENCH_OPTIONS(g_opts, opts_t, g_defaults),
    .run = cputasks_run,
};
