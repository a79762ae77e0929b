/* test_ckpt.c: checkpoint files — a round trip keeps every bit; a flipped payload byte, a flipped
 * header byte, a file cut in half, a wrong magic and another model shape are each rejected with
 * the right message, and the scan falls back to the next older valid file; rotation keeps the
 * K newest and drops later steps of an abandoned run; a write that fails (a directory that is a
 * file, a full disk simulated with RLIMIT_FSIZE, which binds root too) leaves the previous
 * checkpoint intact and no temporary file behind. Several runs in one directory: the scan takes
 * the newest run's (DIR/last's, else the latest written) before a higher step of another run;
 * DIR/best never names a file replaced without its own figures; the lock's holder removes the
 * temporaries a killed writer left (nothing else); --overwrite-checkpoints' set-aside. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "crc32.h"
#include "testutil.h"

#define NP 1000

static char g_dir[256];

static cg_ckpt_shape_t shape(void) {
  cg_ckpt_shape_t s = {5, 4, 2, 32, 32, NP, 1};
  return s;
}

static cg_ckpt_info_t info_at(int64_t step) {
  cg_ckpt_info_t in;
  memset(&in, 0, sizeof in);
  in.shape = shape();
  in.precision = 0;
  in.step = step;
  in.steps_per_epoch = 13;
  in.epoch = step / 13;
  in.epoch_samples = (step % 13) * 8;
  in.train_samples = 100;
  in.ranks = 2;
  in.batch = 4;
  in.seed = 7;
  in.opt_t = step;
  in.total_steps = 100;
  in.loss_scale = 1024.0f;
  in.scale_good_steps = 17;
  in.skipped_steps = 3;
  in.lr = 1e-3;
  in.unix_time = 1700000000;
  in.run_id = 0xc0ffee;
  return in;
}

static void fill(float *p, float *m, float *v, int64_t step) {
  cg_test_fill(p, NP, -1, 1, 100 + (uint64_t)step);
  cg_test_fill(m, NP, -1e-3f, 1e-3f, 200 + (uint64_t)step);
  cg_test_fill(v, NP, 0, 1e-6f, 300 + (uint64_t)step);
}

static int write_step(int64_t step, int keep) {
  float p[NP], m[NP], v[NP];
  fill(p, m, v, step);
  cg_ckpt_info_t in = info_at(step);
  char err[1024], path[512];
  int rc = cg_ckpt_write(g_dir, &in, p, m, v, NULL, keep, path, sizeof path, err, sizeof err);
  if (rc) printf("write of step %lld failed: %s\n", (long long)step, err);
  return rc;
}

static int count_files(const char *prefix) {
  DIR *d = opendir(g_dir);
  int n = 0;
  struct dirent *de;
  while (d && (de = readdir(d)) != NULL)
    if (!strncmp(de->d_name, prefix, strlen(prefix))) n++;
  if (d) closedir(d);
  return n;
}

static void flip_byte(const char *path, long off) {
  FILE *f = fopen(path, "r+b");
  CG_TEST_CHECK(f != NULL, "open %s", path);
  if (!f) return;
  fseek(f, off, SEEK_SET);
  int c = fgetc(f);
  fseek(f, off, SEEK_SET);
  fputc(c ^ 0x10, f);
  fclose(f);
}

static void cut_half(const char *path) {
  struct stat st;
  stat(path, &st);
  CG_TEST_CHECK(truncate(path, st.st_size / 2) == 0, "truncate %s", path);
}

/* reads path and checks the status and that the message contains want */
static void expect(const char *name, const char *path, const cg_ckpt_shape_t *want,
                   cg_ckpt_status_t st_want, const char *msg_want) {
  float p[NP], m[NP], v[NP];
  char err[1024] = "";
  cg_ckpt_info_t in;
  cg_ckpt_status_t st = cg_ckpt_read(path, want, &in, want ? p : NULL, want ? m : NULL,
                                     want ? v : NULL, NULL, err, sizeof err);
  CG_TEST_CHECK(st == st_want, "%s: status %d, want %d (%s)", name, (int)st, (int)st_want, err);
  CG_TEST_CHECK(strstr(err, msg_want) != NULL && strstr(err, path) != NULL,
                "%s: message '%s' lacks '%s' or the file name", name, err, msg_want);
  if (st == st_want && strstr(err, msg_want)) printf("PASS %s: %s\n", name, err);
}

/* Version 3 (issue 13): the classes, the ignore label and the masks' palette round trip; a
 * class-count mismatch is another shape; a flipped palette byte is caught; a version-2 file
 * (the same header without those fields) reads as binary. In its own directory. */
static void test_classes(void) {
  char dir[300], path[512], err[1024];
  snprintf(dir, sizeof dir, "%s/k", g_dir);
  mkdir(dir, 0777);
  float p[NP], m[NP], v[NP];
  fill(p, m, v, 5);
  cg_ckpt_info_t in = info_at(5), out;
  in.shape.nclass = 4;
  in.ignore_index = 255;
  in.npal = 21;
  for (int i = 0; i < 63; i++) in.palette[i] = (uint8_t)(i * 11);
  CG_TEST_CHECK(cg_ckpt_write(dir, &in, p, m, v, NULL, 3, path, sizeof path, err, sizeof err) == 0,
                "write K = 4: %s", err);
  cg_ckpt_shape_t want = shape();
  want.nclass = 4;
  cg_ckpt_status_t st = cg_ckpt_read(path, &want, &out, p, m, v, NULL, err, sizeof err);
  CG_TEST_CHECK(st == CG_CKPT_OK && out.shape.nclass == 4 && out.ignore_index == 255 &&
                    out.npal == 21 && !memcmp(out.palette, in.palette, 63),
                "K = 4 round trip: %d classes, ignore %d, %d palette entries (%s)",
                out.shape.nclass, out.ignore_index, out.npal, err);
  if (st == CG_CKPT_OK) printf("PASS K = 4 round trip: classes, ignore label, palette\n");
  cg_ckpt_shape_t bin = shape();
  expect("another number of classes", path, &bin, CG_CKPT_ESHAPE,
         "the checkpoint has in 5, base 4, depth 2, 32x32, 4 classes, 1000 parameters; this run "
         "has in 5, base 4, depth 2, 32x32, 1000 parameters");
  flip_byte(path, CG_CKPT_HEADER_BYTES + 3 * NP * 4 + 5);
  expect("palette byte flipped", path, &want, CG_CKPT_ECORRUPT, "palette CRC mismatch");
  /* version 2: a binary file of that layout (fields 180.. zero) */
  in = info_at(6);
  in.ignore_index = -1;
  CG_TEST_CHECK(cg_ckpt_write(dir, &in, p, m, v, NULL, 3, path, sizeof path, err, sizeof err) == 0,
                "write: %s", err);
  FILE *f = fopen(path, "r+b");
  uint8_t h[256];
  CG_TEST_CHECK(f && fread(h, 1, 256, f) == 256, "read header");
  if (!f) return;
  h[8] = 2;
  memset(h + 180, 0, 16);
  const uint32_t crc = cg_crc32(0, h, 252);
  for (int b = 0; b < 4; b++) h[252 + b] = (uint8_t)(crc >> (8 * b));
  fseek(f, 0, SEEK_SET);
  fwrite(h, 1, 256, f);
  fclose(f);
  st = cg_ckpt_read(path, &bin, &out, p, m, v, NULL, err, sizeof err);
  CG_TEST_CHECK(st == CG_CKPT_OK && out.version == 2 && out.shape.nclass == 1 &&
                    out.ignore_index == -1 && out.npal == 0,
                "version 2: status %d, version %u, %d classes (%s)", (int)st, out.version,
                out.shape.nclass, err);
  if (st == CG_CKPT_OK) printf("PASS a version-2 checkpoint reads as binary\n");
  char **paths;
  int64_t *steps;
  int n;
  cg_ckpt_list(dir, &paths, &steps, &n, err, sizeof err);
  for (int i = 0; i < n; i++) unlink(paths[i]);
  cg_ckpt_list_free(paths, steps, n);
  rmdir(dir);
}

static void rm_dir(const char *dir);

/* --ema-decay's checkpoint (version 5): the average as params, the training weights after v;
 * read back with and without the fourth array, a file without one leaves it untouched, and a
 * header whose ema flag does not match its payload's length is corrupt. */
static void test_ema(void) {
  char dir[300], path[512], err[1024];
  snprintf(dir, sizeof dir, "%s/e", g_dir);
  mkdir(dir, 0777);
  float p[NP], m[NP], v[NP], t[NP], p2[NP], m2[NP], v2[NP], t2[NP];
  fill(p, m, v, 9);
  cg_test_fill(t, NP, -1, 1, 400);
  cg_ckpt_info_t in = info_at(9), out;
  CG_TEST_CHECK(cg_ckpt_write(dir, &in, p, m, v, t, 3, path, sizeof path, err, sizeof err) == 0,
                "write with an average: %s", err);
  const cg_ckpt_shape_t want = shape();
  cg_ckpt_status_t st = cg_ckpt_read(path, &want, &out, p2, m2, v2, t2, err, sizeof err);
  int ok = st == CG_CKPT_OK && out.ema && out.version == 5 &&
           out.payload_bytes == 4ull * NP * sizeof(float) && !memcmp(p2, p, sizeof p) &&
           !memcmp(m2, m, sizeof m) && !memcmp(v2, v, sizeof v) && !memcmp(t2, t, sizeof t);
  CG_TEST_CHECK(ok, "average round trip: status %d, ema %d (%s)", (int)st, out.ema, err);
  st = cg_ckpt_read(path, &want, &out, p2, m2, v2, NULL, err, sizeof err); /* predict's read */
  CG_TEST_CHECK(st == CG_CKPT_OK && !memcmp(p2, p, sizeof p), "read without the fourth: %s",
                err);
  st = cg_ckpt_read(path, NULL, &out, NULL, NULL, NULL, NULL, err, sizeof err); /* verify */
  CG_TEST_CHECK(st == CG_CKPT_OK && out.ema, "verify only: %s", err);
  if (ok && st == CG_CKPT_OK) printf("PASS the average as params, the training weights after v\n");
  in = info_at(10); /* without: the fourth array untouched */
  CG_TEST_CHECK(cg_ckpt_write(dir, &in, p, m, v, NULL, 3, path, sizeof path, err, sizeof err) == 0,
                "write: %s", err);
  memcpy(t2, t, sizeof t);
  st = cg_ckpt_read(path, &want, &out, p2, m2, v2, t2, err, sizeof err);
  ok = st == CG_CKPT_OK && !out.ema && out.payload_bytes == 3ull * NP * sizeof(float) &&
       !memcmp(t2, t, sizeof t);
  CG_TEST_CHECK(ok, "without an average: status %d, ema %d (%s)", (int)st, out.ema, err);
  if (ok) printf("PASS without an average: 3 arrays, the fourth left as it was\n");
  /* the flag set on a 3-array file (the header CRC made to match): the length disagrees */
  FILE *f = fopen(path, "r+b");
  uint8_t h[256];
  CG_TEST_CHECK(f && fread(h, 1, 256, f) == 256, "read header");
  if (!f) return;
  h[236] = 1;
  const uint32_t crc = cg_crc32(0, h, 252);
  for (int b = 0; b < 4; b++) h[252 + b] = (uint8_t)(crc >> (8 * b));
  fseek(f, 0, SEEK_SET);
  fwrite(h, 1, 256, f);
  fclose(f);
  expect("the ema flag without its array", path, &want, CG_CKPT_ECORRUPT, "inconsistent header");
  rm_dir(dir);
}

/* Writes the checkpoint of `step` of run `id`, written at unix time t, with validation figure
 * iou (< 0: none), into dir with keep 10. */
static void write_run(const char *dir, int64_t step, uint64_t id, int64_t t, double iou) {
  float p[NP], m[NP], v[NP];
  fill(p, m, v, step + (int64_t)id);
  cg_ckpt_info_t in = info_at(step);
  in.run_id = id;
  in.unix_time = t;
  in.have_val = iou >= 0;
  in.val_step = step;
  in.val_iou = iou;
  in.val_loss = 1;
  char err[1024], path[512];
  CG_TEST_CHECK(cg_ckpt_write(dir, &in, p, m, v, NULL, 10, path, sizeof path, err, sizeof err) == 0,
                "write step %lld of run %llx: %s", (long long)step, (unsigned long long)id, err);
}

/* Removes a test directory: its checkpoints, the pointer files, the directory. */
static void rm_dir(const char *dir) {
  char **paths, err[256], f[600];
  int64_t *steps;
  int n;
  if (cg_ckpt_list(dir, &paths, &steps, &n, err, sizeof err) == 0) {
    for (int i = 0; i < n; i++) unlink(paths[i]);
    cg_ckpt_list_free(paths, steps, n);
  }
  snprintf(f, sizeof f, "%s/last", dir);
  unlink(f);
  snprintf(f, sizeof f, "%s/best", dir);
  unlink(f);
  if (rmdir(dir) != 0) { /* another run's files set aside in previous-* folders */
    snprintf(f, sizeof f, "rm -rf '%s'", dir);
    if (system(f) != 0) printf("could not remove %s\n", dir);
  }
}

/* Version 4: the settings trailer and the validation figures survive a round trip, a flipped
 * settings byte is caught, a version-3 file (no trailer) still reads; DIR/last names the newest,
 * DIR/best the highest val_iou (or lowest val_loss), and rotation keeps best's file besides the
 * `keep` newest. */
static void test_best_last(void) {
  char dir[] = "/tmp/cg_test_ckpt_best.XXXXXX";
  if (!mkdtemp(dir)) return;
  float p[NP], m[NP], v[NP];
  char err[1024], path[512], bp[600], met[32];
  const cg_ckpt_shape_t want = shape();
  /* step: val_iou (-1: no validation at that step), val_loss */
  const double figs[][3] = {{10, 0.5, 0.9}, {20, 0.7, 0.4}, {30, 0.6, 0.3}, {40, -1, 0}};
  for (int i = 0; i < 4; i++) {
    cg_ckpt_info_t in = info_at((int64_t)figs[i][0]);
    snprintf(in.settings, sizeof in.settings, "{\"model-base\": \"4\", \"data\": \"a \\\"b\\\"\"}");
    in.have_val = figs[i][1] >= 0;
    in.val_step = in.step;
    in.val_iou = figs[i][1];
    in.val_loss = figs[i][2];
    fill(p, m, v, in.step);
    CG_TEST_CHECK(cg_ckpt_write(dir, &in, p, m, v, NULL, 1, path, sizeof path, err,
                                sizeof err) == 0,
                  "write: %s", err);
  }
  int64_t s = -1;
  double val = 0;
  CG_TEST_CHECK(cg_ckpt_read_pointer(dir, "last", bp, sizeof bp, &s, NULL, 0, NULL) == 0 &&
                    s == 40 && strstr(bp, "ckpt-0000000040.cgck"),
                "last: step %lld %s", (long long)s, bp);
  CG_TEST_CHECK(cg_ckpt_read_pointer(dir, "best", bp, sizeof bp, &s, met, sizeof met, &val) == 0 &&
                    s == 20 && !strcmp(met, "val_iou") && val == 0.7,
                "best: step %lld %s %s %g", (long long)s, bp, met, val);
  char **paths;
  int64_t *steps;
  int n;
  cg_ckpt_list(dir, &paths, &steps, &n, err, sizeof err);
  CG_TEST_CHECK(n == 2 && steps[0] == 40 && steps[1] == 20,
                "keep 1 + best: %d files, newest %lld", n, n ? (long long)steps[0] : -1LL);
  cg_ckpt_list_free(paths, steps, n);
  printf("PASS last -> step 40, best -> step 20 (val_iou 0.7), kept besides the 1 newest\n");
  cg_ckpt_info_t *out = malloc(sizeof *out);
  cg_ckpt_path(dir, 20, path, sizeof path);
  cg_ckpt_status_t st = cg_ckpt_read(path, &want, out, p, m, v, NULL, err, sizeof err);
  CG_TEST_CHECK(st == CG_CKPT_OK && out->version == CG_CKPT_VERSION && out->have_val &&
                    out->val_step == 20 &&
                    out->val_iou == 0.7 && out->val_loss == 0.4 &&
                    !strcmp(out->settings, "{\"model-base\": \"4\", \"data\": \"a \\\"b\\\"\"}"),
                "v4 round trip: %s (settings '%s')", err, out->settings);
  printf("PASS version %d: settings and validation figures round trip\n", CG_CKPT_VERSION);
  /* by val_loss: a best chosen by another metric is replaced at once, then kept while lower */
  cg_ckpt_info_t in = info_at(50);
  in.have_val = 1;
  in.val_step = 50;
  in.val_loss = 0.35;
  in.val_iou = 0.1;
  in.best_by = CG_CKPT_BEST_LOSS;
  fill(p, m, v, 50);
  CG_TEST_CHECK(cg_ckpt_write(dir, &in, p, m, v, NULL, 1, path, sizeof path, err, sizeof err) == 0,
                "write: %s", err);
  CG_TEST_CHECK(cg_ckpt_read_pointer(dir, "best", bp, sizeof bp, &s, met, sizeof met, &val) == 0 &&
                    s == 50 && !strcmp(met, "val_loss"),
                "best by loss: step %lld %s", (long long)s, met);
  in = info_at(60);
  in.have_val = 1;
  in.val_step = 60;
  in.val_loss = 0.5;
  in.best_by = CG_CKPT_BEST_LOSS;
  CG_TEST_CHECK(cg_ckpt_write(dir, &in, p, m, v, NULL, 1, path, sizeof path, err, sizeof err) == 0,
                "write: %s", err);
  CG_TEST_CHECK(cg_ckpt_read_pointer(dir, "best", bp, sizeof bp, &s, met, sizeof met, &val) == 0 &&
                    s == 50 && val == 0.35,
                "best by loss after a worse one: step %lld %g", (long long)s, val);
  cg_ckpt_path(dir, 50, path, sizeof path);
  CG_TEST_CHECK(access(path, F_OK) == 0, "best's file (step 50) was rotated away");
  printf("PASS --best-metric val_loss: the lowest stays best and is kept\n");
  /* a flipped settings byte; then the same file as version 3 (no trailer) */
  cg_ckpt_path(dir, 60, path, sizeof path);
  cg_ckpt_info_t w = info_at(70);
  snprintf(w.settings, sizeof w.settings, "{\"seed\": \"7\"}");
  CG_TEST_CHECK(cg_ckpt_write(dir, &w, p, m, v, NULL, 3, path, sizeof path, err, sizeof err) == 0,
                "write: %s", err);
  flip_byte(path, CG_CKPT_HEADER_BYTES + 3 * NP * 4 + 3);
  expect("settings byte flipped", path, &want, CG_CKPT_ECORRUPT, "settings CRC mismatch");
  w.settings[0] = 0;
  CG_TEST_CHECK(cg_ckpt_write(dir, &w, p, m, v, NULL, 3, path, sizeof path, err, sizeof err) == 0,
                "write: %s", err);
  FILE *f = fopen(path, "r+b");
  uint8_t h[256];
  if (f && fread(h, 1, 256, f) == 256) {
    h[8] = 3;
    const uint32_t crc = cg_crc32(0, h, 252);
    for (int b = 0; b < 4; b++) h[252 + b] = (uint8_t)(crc >> (8 * b));
    fseek(f, 0, SEEK_SET);
    fwrite(h, 1, 256, f);
  }
  if (f) fclose(f);
  st = cg_ckpt_read(path, &want, out, p, m, v, NULL, err, sizeof err);
  CG_TEST_CHECK(st == CG_CKPT_OK && out->version == 3 && !out->settings[0] && !out->have_val,
                "version 3: status %d (%s)", (int)st, err);
  if (st == CG_CKPT_OK) printf("PASS a version-3 checkpoint still reads (no settings)\n");
  free(out);
  rm_dir(dir);
}

static void report(void *ctx, const char *line) {
  int *n = ctx;
  (*n)++;
  printf("  scan: %s\n", line);
}

/* Round trip: the header and the payload bit for bit. */
static void test_round_trip(void) {
  char err[1024], path[512];
  const cg_ckpt_shape_t want = shape();
  /* ---- round trip ---- */
  CG_TEST_CHECK(write_step(10, 5) == 0, "write step 10");
  {
    float p[NP], m[NP], v[NP], p0[NP], m0[NP], v0[NP];
    fill(p0, m0, v0, 10);
    cg_ckpt_info_t in, ref = info_at(10);
    cg_ckpt_path(g_dir, 10, path, sizeof path);
    cg_ckpt_status_t st = cg_ckpt_read(path, &want, &in, p, m, v, NULL, err, sizeof err);
    CG_TEST_CHECK(st == CG_CKPT_OK, "read back: %s", err);
    CG_TEST_CHECK(!memcmp(p, p0, sizeof p) && !memcmp(m, m0, sizeof m) && !memcmp(v, v0, sizeof v),
                  "payload differs after the round trip");
    CG_TEST_CHECK(in.step == 10 && in.epoch == ref.epoch && in.epoch_samples == ref.epoch_samples &&
                      in.ranks == 2 && in.batch == 4 && in.seed == 7 && in.opt_t == 10 &&
                      in.total_steps == 100 && in.loss_scale == 1024.0f &&
                      in.scale_good_steps == 17 && in.skipped_steps == 3 && in.lr == 1e-3 &&
                      in.unix_time == 1700000000 && in.version == CG_CKPT_VERSION,
                  "header fields differ after the round trip");
    if (st == CG_CKPT_OK) printf("PASS round trip: header and %d x 3 floats bit for bit\n", NP);
    CG_TEST_CHECK(count_files(".ckpt-") == 0, "a temporary file was left");
  }
}

/* Each kind of damage, on its own copy (files 20..60 stay damaged for the scan). */
static void test_damage(void) {
  const cg_ckpt_shape_t want = shape();
  /* ---- each kind of damage, on its own copy ---- */
  CG_TEST_CHECK(write_step(20, 5) == 0 && write_step(30, 5) == 0 && write_step(40, 5) == 0 &&
                    write_step(50, 5) == 0,
                "writes");
  char p20[512], p30[512], p40[512], p50[512];
  cg_ckpt_path(g_dir, 20, p20, sizeof p20);
  cg_ckpt_path(g_dir, 30, p30, sizeof p30);
  cg_ckpt_path(g_dir, 40, p40, sizeof p40);
  cg_ckpt_path(g_dir, 50, p50, sizeof p50);
  flip_byte(p50, CG_CKPT_HEADER_BYTES + 1234); /* payload */
  expect("payload byte flipped", p50, &want, CG_CKPT_ECORRUPT, "payload CRC mismatch");
  flip_byte(p40, 50); /* header: the step */
  expect("header byte flipped", p40, &want, CG_CKPT_ECORRUPT, "header CRC mismatch");
  cut_half(p30);
  expect("cut in half", p30, &want, CG_CKPT_ETRUNC, "truncated");
  {
    char p60[512];
    CG_TEST_CHECK(write_step(60, 10) == 0, "write 60");
    cg_ckpt_path(g_dir, 60, p60, sizeof p60);
    flip_byte(p60, 0);
    expect("wrong magic", p60, &want, CG_CKPT_EMAGIC, "bad magic");
    /* a file that is no checkpoint at all, shorter than a header */
    FILE *f = fopen(p60, "wb");
    fputs("hello", f);
    fclose(f);
    expect("short foreign file", p60, &want, CG_CKPT_EMAGIC, "bad magic");
    f = fopen(p60, "wb");
    fputs(CG_CKPT_MAGIC "and then nothing", f);
    fclose(f);
    expect("header cut short", p60, &want, CG_CKPT_ETRUNC, "less than the 256-byte header");
  }
  {
    cg_ckpt_shape_t other = want;
    other.base = 8;
    other.nparams = 4 * NP;
    expect("another model shape", p20, &other, CG_CKPT_ESHAPE,
           "the checkpoint has in 5, base 4, depth 2, 32x32, 1000 parameters; this run has in 5, "
           "base 8, depth 2, 32x32, 4000 parameters");
  }
  expect("verify-only reader sees the same damage", p50, NULL, CG_CKPT_ECORRUPT, "payload CRC");
  test_classes();
  test_ema();
}

/* The newest-valid scan over the damaged files. */
static void test_scan(void) {
  char err[1024], path[512];
  const cg_ckpt_shape_t want = shape();
  char p20[512];
  cg_ckpt_path(g_dir, 20, p20, sizeof p20);
  /* ---- newest-valid scan: 60 (foreign), 50 (payload), 40 (header), 30 (cut) -> 20 ---- */
  {
    float p[NP], m[NP], v[NP];
    int rejected = 0;
    cg_ckpt_info_t in;
    int rc = cg_ckpt_find(g_dir, &want, &in, p, m, v, NULL, path, sizeof path, report, &rejected,
                          err, sizeof err);
    CG_TEST_CHECK(rc == 0 && in.step == 20 && !strcmp(path, p20) && rejected == 4,
                  "scan: rc %d, step %lld, %s, %d rejected (%s)", rc, (long long)in.step, path,
                  rejected, err);
    float p0[NP], m0[NP], v0[NP];
    fill(p0, m0, v0, 20);
    CG_TEST_CHECK(rc == 0 && !memcmp(p, p0, sizeof p) && !memcmp(v, v0, sizeof v),
                  "scan: the payload is not step 20's");
    if (rc == 0 && in.step == 20 && rejected == 4)
      printf("PASS newest-valid scan: 4 damaged files reported, step 20 loaded\n");
    /* another shape everywhere: nothing usable, and the message says how many were tried */
    cg_ckpt_shape_t other = want;
    other.depth = 3;
    rejected = 0;
    rc = cg_ckpt_find(g_dir, &other, &in, p, m, v, NULL, path, sizeof path, report, &rejected, err,
                      sizeof err);
    CG_TEST_CHECK(rc == -1 && strstr(err, "none of its 6 checkpoint(s) is valid"),
                  "scan of another shape: rc %d (%s)", rc, err);
    if (rc == -1) printf("PASS scan with no usable file: %s\n", err);
    char empty[300];
    snprintf(empty, sizeof empty, "%s/empty", g_dir);
    mkdir(empty, 0777);
    rc = cg_ckpt_find(empty, &want, &in, p, m, v, NULL, path, sizeof path, NULL, NULL, err,
                      sizeof err);
    CG_TEST_CHECK(rc == 1, "empty directory: rc %d (%s)", rc, err);
    rmdir(empty);
  }
}

/* Rotation within this run's lineage. */
static void test_rotation(void) {
  char err[1024];
  /* ---- rotation: keep this run's 3 newest; its later steps (an abandoned attempt) go; files
   * whose header cannot say whose they are (60: not a checkpoint, 40: header CRC) are never
   * removed. Ours with a readable header: 10, 20, 30 (cut, header intact), 50 (payload). ---- */
  {
    CG_TEST_CHECK(write_step(70, 3) == 0, "write 70");
    char **paths;
    int64_t *steps;
    int n;
    cg_ckpt_list(g_dir, &paths, &steps, &n, err, sizeof err);
    CG_TEST_CHECK(n == 5 && steps[0] == 70 && steps[1] == 60 && steps[2] == 50 && steps[3] == 40 &&
                      steps[4] == 30,
                  "keep 3: %d files, newest %lld (want 70 60 50 40 30)", n,
                  n ? (long long)steps[0] : -1LL);
    cg_ckpt_list_free(paths, steps, n);
    CG_TEST_CHECK(write_step(55, 3) == 0, "write 55 (a run resumed from 50)");
    cg_ckpt_list(g_dir, &paths, &steps, &n, err, sizeof err);
    CG_TEST_CHECK(n == 5 && steps[0] == 60 && steps[1] == 55 && steps[2] == 50 && steps[3] == 40 &&
                      steps[4] == 30,
                  "after resuming at 50 and writing 55: %d files, newest %lld (want 60 55 50 40 "
                  "30)", n, n ? (long long)steps[0] : -1LL);
    cg_ckpt_list_free(paths, steps, n);
    printf("PASS rotation: keeps the run's 3 newest, drops its later steps after a resume, never "
           "a file it cannot tell is its own\n");
  }
}

/* Rotation and another run's checkpoints. */
static void test_rotation_foreign(void) {
  char err[1024], path[512];
  /* ---- rotation never removes another run's checkpoints (issue 11: a forgotten --resume or a
   * fresh run into the same directory wiped an earlier run) ---- */
  {
    float p[NP], m[NP], v[NP];
    fill(p, m, v, 90);
    cg_ckpt_info_t other = info_at(90);
    other.run_id = 0xbeef; /* another run's, of later steps than what comes next */
    CG_TEST_CHECK(cg_ckpt_write(g_dir, &other, p, m, v, NULL, 3, path, sizeof path, err,
                                sizeof err) == 0,
                  "write another run's 90: %s", err);
    other = info_at(95);
    other.run_id = 0xbeef;
    CG_TEST_CHECK(cg_ckpt_write(g_dir, &other, p, m, v, NULL, 3, path, sizeof path, err,
                                sizeof err) == 0,
                  "write another run's 95: %s", err);
    CG_TEST_CHECK(write_step(56, 1) == 0, "write 56 of this run with keep 1");
    char **paths;
    int64_t *steps;
    int n;
    cg_ckpt_list(g_dir, &paths, &steps, &n, err, sizeof err);
    int has90 = 0, has95 = 0, has56 = 0, has55 = 0;
    for (int i = 0; i < n; i++) {
      has90 |= steps[i] == 90;
      has95 |= steps[i] == 95;
      has56 |= steps[i] == 56;
      has55 |= steps[i] == 55;
    }
    cg_ckpt_list_free(paths, steps, n);
    CG_TEST_CHECK(has90 && has95 && has56 && !has55,
                  "lineage rotation: another run's 90 %d, 95 %d kept; ours: 56 %d kept, 55 %d gone",
                  has90, has95, has56, has55);
    cg_ckpt_info_t in;
    char p95[512];
    cg_ckpt_path(g_dir, 95, p95, sizeof p95);
    CG_TEST_CHECK(cg_ckpt_read(p95, NULL, &in, NULL, NULL, NULL, NULL, err,
                               sizeof err) == CG_CKPT_OK &&
                      in.run_id == 0xbeef && in.version == CG_CKPT_VERSION,
                  "run id read back: %llx (%s)", (unsigned long long)in.run_id, err);
    if (has90 && has95 && has56 && !has55)
      printf("PASS rotation keeps another run's checkpoints (even of later steps), drops ours\n");
    char victim[512];
    cg_ckpt_path(g_dir, 90, victim, sizeof victim);
    unlink(victim);
    unlink(p95);
  }
}

/* Header fields out of range with valid CRCs. */
static void test_header_ranges(void) {
  const cg_ckpt_shape_t want = shape();
  /* ---- header fields out of range, with valid CRCs: rejected by name, never trusted (a huge
   * epoch overflowed the resume position and tripped an assertion) ---- */
  {
    const struct {
      const char *field;
      long off;
      uint64_t value;
    } bad[] = {{"epoch", 56, (uint64_t)1 << 62}, {"step", 48, (uint64_t)-5},
               {"steps_per_epoch", 72, 0}, {"train_samples", 80, (uint64_t)1 << 61},
               {"opt_t", 104, (uint64_t)1 << 60}, {"total_steps", 112, (uint64_t)-1},
               {"batch", 92, 0}, {"batch", 92, ((uint64_t)1 << 26) + 1}, {"base", 20, 2048},
               /* a binary model whose ignore label is 0: a class id (no run writes it; predict's
                * metrics would drop every background pixel) */
               {"ignore_index", 184, 0}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
      CG_TEST_CHECK(write_step(57, 10) == 0, "write 57");
      char p57[512];
      cg_ckpt_path(g_dir, 57, p57, sizeof p57);
      FILE *f = fopen(p57, "r+b");
      uint8_t h[256];
      CG_TEST_CHECK(f && fread(h, 1, 256, f) == 256, "read header");
      if (!f) continue;
      const int w = bad[k].off == 92 || bad[k].off == 20 || bad[k].off == 184 ? 4 : 8;
      for (int b = 0; b < w; b++) h[bad[k].off + b] = (uint8_t)(bad[k].value >> (8 * b));
      const uint32_t crc = cg_crc32(0, h, 252);
      for (int b = 0; b < 4; b++) h[252 + b] = (uint8_t)(crc >> (8 * b));
      fseek(f, 0, SEEK_SET);
      fwrite(h, 1, 256, f);
      fclose(f);
      char name[96];
      snprintf(name, sizeof name, "header field %s out of range, CRC valid", bad[k].field);
      char want_msg[96];
      snprintf(want_msg, sizeof want_msg, "header field %s out of range", bad[k].field);
      expect(name, p57, &want, CG_CKPT_ECORRUPT, want_msg);
      unlink(p57);
    }
  }
  /* the largest batch a run writes, --batch 65536 x --grad-accum 1024, reads back */
  CG_TEST_CHECK(write_step(58, 10) == 0, "write 58");
  char p58[512], err[1024];
  cg_ckpt_path(g_dir, 58, p58, sizeof p58);
  FILE *f = fopen(p58, "r+b");
  uint8_t h[256];
  CG_TEST_CHECK(f && fread(h, 1, 256, f) == 256, "read header");
  if (!f) return;
  for (int b = 0; b < 4; b++) h[92 + b] = (uint8_t)(((uint32_t)1 << 26) >> (8 * b));
  const uint32_t crc = cg_crc32(0, h, 252);
  for (int b = 0; b < 4; b++) h[252 + b] = (uint8_t)(crc >> (8 * b));
  fseek(f, 0, SEEK_SET);
  fwrite(h, 1, 256, f);
  fclose(f);
  cg_ckpt_info_t in;
  const cg_ckpt_status_t st = cg_ckpt_read(p58, NULL, &in, NULL, NULL, NULL, NULL, err, sizeof err);
  CG_TEST_CHECK(st == CG_CKPT_OK && in.batch == 1 << 26, "batch 2^26: status %d (%s)", (int)st,
                err);
  if (st == CG_CKPT_OK) printf("PASS batch 2^26 (--batch 65536 x --grad-accum 1024) reads back\n");
  unlink(p58);
}

/* Failed writes leave the previous checkpoint intact. */
static void test_failed_writes(void) {
  char err[1024], path[512];
  const cg_ckpt_shape_t want = shape();
  /* ---- failed writes leave the previous checkpoint intact ---- */
  CG_TEST_CHECK(write_step(80, 3) == 0, "write 80");
  int n_before_failures = 0;
  {
    char **paths;
    int64_t *steps;
    cg_ckpt_list(g_dir, &paths, &steps, &n_before_failures, err, sizeof err);
    cg_ckpt_list_free(paths, steps, n_before_failures);
  }
  char p80[512];
  cg_ckpt_path(g_dir, 80, p80, sizeof p80);
  {
    /* a "directory" that is a regular file: no permission bits involved, so it fails for root */
    char notdir[400];
    snprintf(notdir, sizeof notdir, "%s/ckpt-0000000080.cgck", g_dir);
    float p[NP], m[NP], v[NP];
    fill(p, m, v, 90);
    cg_ckpt_info_t in = info_at(90);
    int rc = cg_ckpt_write(notdir, &in, p, m, v, NULL, 3, path, sizeof path, err, sizeof err);
    CG_TEST_CHECK(rc == -1 && strstr(err, "cannot create a temporary file"),
                  "write into a file: rc %d (%s)", rc, err);
    rc = cg_ckpt_prepare_dir(notdir, "--checkpoint-dir", err, sizeof err);
    CG_TEST_CHECK(rc == -1 && strstr(err, "Not a directory"), "prepare_dir: %s", err);
    if (rc == -1) printf("PASS unwritable directory: %s\n", err);
  }
  {
    /* a full disk: writes past 4 KiB fail with EFBIG (SIGXFSZ ignored), root included */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 4096;
    CG_TEST_CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit: %s", strerror(errno));
    float p[NP], m[NP], v[NP];
    fill(p, m, v, 90);
    cg_ckpt_info_t in = info_at(90);
    int rc = cg_ckpt_write(g_dir, &in, p, m, v, NULL, 1, path, sizeof path, err, sizeof err);
    setrlimit(RLIMIT_FSIZE, &old);
    CG_TEST_CHECK(rc == -1 && strstr(err, "write failed"), "full disk: rc %d (%s)", rc, err);
    if (rc == -1) printf("PASS full disk: %s\n", err);
  }
  {
    cg_ckpt_info_t in;
    float p[NP], m[NP], v[NP], p0[NP], m0[NP], v0[NP];
    fill(p0, m0, v0, 80);
    cg_ckpt_status_t st = cg_ckpt_read(p80, &want, &in, p, m, v, NULL, err, sizeof err);
    char p90[512];
    cg_ckpt_path(g_dir, 90, p90, sizeof p90);
    CG_TEST_CHECK(st == CG_CKPT_OK && in.step == 80 && !memcmp(p, p0, sizeof p),
                  "the previous checkpoint changed: %s", err);
    CG_TEST_CHECK(access(p90, F_OK) != 0, "a partial ckpt-90 exists");
    CG_TEST_CHECK(count_files(".ckpt-") == 0, "a temporary file was left");
    char **paths;
    int64_t *steps;
    int n;
    cg_ckpt_list(g_dir, &paths, &steps, &n, err, sizeof err);
    CG_TEST_CHECK(n == n_before_failures, "the failed writes removed files: %d left of %d", n,
                  n_before_failures);
    cg_ckpt_list_free(paths, steps, n);
    if (st == CG_CKPT_OK) printf("PASS after the failed writes: step 80 intact, no partial file\n");
  }
}

/* The step cg_ckpt_find picks in dir and its run id; -1 when none. */
static int64_t found(const char *dir, uint64_t *id, int *reports) {
  float p[NP], m[NP], v[NP];
  char err[1024], path[512];
  const cg_ckpt_shape_t want = shape();
  cg_ckpt_info_t in;
  int n = 0;
  const int rc = cg_ckpt_find(dir, &want, &in, p, m, v, NULL, path, sizeof path, report, &n, err,
                              sizeof err);
  if (reports) *reports = n;
  if (rc != 0) return -1;
  if (id) *id = in.run_id;
  return in.step;
}

/* Sets the unix_time in path's header (its CRC made again). */
static void set_time(const char *path, int64_t t) {
  FILE *f = fopen(path, "r+b");
  uint8_t h[256];
  if (f && fread(h, 1, 256, f) == 256) {
    for (int b = 0; b < 8; b++) h[152 + b] = (uint8_t)((uint64_t)t >> (8 * b));
    const uint32_t crc = cg_crc32(0, h, 252);
    for (int b = 0; b < 4; b++) h[252 + b] = (uint8_t)(crc >> (8 * b));
    fseek(f, 0, SEEK_SET);
    fwrite(h, 1, 256, f);
  }
  if (f) fclose(f);
}

/* Two runs in one directory: run A (steps 20, 40), then run B (steps 10, 30), B written last.
 * --resume DIR continues B (DIR/last's run), not A's higher step; without DIR/last the latest
 * written run, by header time; a damaged file of B falls back within B first, and to A only
 * when none of B's is usable, with a report saying so. */
static void test_resume_newest_run(void) {
  char dir[] = "/tmp/cg_test_ckpt_runs.XXXXXX";
  if (!mkdtemp(dir)) return;
  char path[512], f[600];
  uint64_t id = 0;
  int reports = 0;
  write_run(dir, 20, 0xA, 1700000000, -1);
  write_run(dir, 40, 0xA, 1700000010, -1);
  write_run(dir, 10, 0xB, 1700000100, -1);
  write_run(dir, 30, 0xB, 1700000110, -1);
  int64_t s = found(dir, &id, NULL);
  CG_TEST_CHECK(s == 30 && id == 0xB, "with DIR/last: step %lld of run %llx, want 30 of b",
                (long long)s, (unsigned long long)id);
  snprintf(f, sizeof f, "%s/last", dir);
  unlink(f);
  s = found(dir, &id, NULL);
  CG_TEST_CHECK(s == 30 && id == 0xB, "without DIR/last: step %lld of run %llx, want 30 of b",
                (long long)s, (unsigned long long)id);
  cg_ckpt_path(dir, 40, path, sizeof path); /* A's 40 now the latest written by its header */
  set_time(path, 1700000200);
  s = found(dir, &id, NULL);
  CG_TEST_CHECK(s == 40 && id == 0xA, "by header time: step %lld of run %llx, want 40 of a",
                (long long)s, (unsigned long long)id);
  set_time(path, 1700000010);
  write_run(dir, 30, 0xB, 1700000110, -1); /* DIR/last again names B's 30 */
  cg_ckpt_path(dir, 30, path, sizeof path);
  flip_byte(path, CG_CKPT_HEADER_BYTES + 40);
  s = found(dir, &id, &reports);
  CG_TEST_CHECK(s == 10 && id == 0xB && reports == 1,
                "B's 30 damaged: step %lld of run %llx (%d reports), want 10 of b", (long long)s,
                (unsigned long long)id, reports);
  cg_ckpt_path(dir, 10, path, sizeof path);
  flip_byte(path, CG_CKPT_HEADER_BYTES + 40);
  s = found(dir, &id, &reports);
  CG_TEST_CHECK(s == 40 && id == 0xA && reports == 3,
                "all of B damaged: step %lld of run %llx (%d reports: 2 skipped + another run), "
                "want 40 of a", (long long)s, (unsigned long long)id, reports);
  printf("PASS --resume DIR: the newest run (DIR/last's, else the latest written) before a "
         "higher step of another; within it first when a file is damaged\n");
  rm_dir(dir);
  /* within one run: the file written last. DIR/last left stale (a crash between a checkpoint
   * and its pointer) costs nothing; a later step of an abandoned attempt (kept as best) is not
   * taken over the branch written after it; files of the same second: the higher step */
  char d2[] = "/tmp/cg_test_ckpt_order.XXXXXX";
  if (!mkdtemp(d2)) return;
  write_run(d2, 10, 0xA, 1700000100, -1);
  write_run(d2, 20, 0xA, 1700000200, -1);
  snprintf(f, sizeof f, "%s/last", d2);
  FILE *lf = fopen(f, "w");
  if (lf) {
    fputs("ckpt-0000000010.cgck\nstep 10\n", lf);
    fclose(lf);
  }
  s = found(d2, &id, NULL);
  CG_TEST_CHECK(s == 20, "DIR/last stale at 10: step %lld, want 20", (long long)s);
  rm_dir(d2);
  if (!mkdtemp(strcpy(d2, "/tmp/cg_test_ckpt_order.XXXXXX"))) return;
  write_run(d2, 10, 0xA, 1700000100, -1);
  write_run(d2, 30, 0xA, 1700000300, 0.9); /* an attempt abandoned; best keeps it */
  write_run(d2, 20, 0xA, 1700000400, -1);  /* the branch resumed from 10 */
  cg_ckpt_path(d2, 30, path, sizeof path);
  CG_TEST_CHECK(access(path, F_OK) == 0, "best's 30 was rotated away");
  s = found(d2, &id, NULL);
  CG_TEST_CHECK(s == 20, "abandoned 30 kept as best: step %lld, want the branch's 20", (long long)s);
  snprintf(f, sizeof f, "%s/last", d2);
  unlink(f);
  s = found(d2, &id, NULL);
  CG_TEST_CHECK(s == 20, "the same without DIR/last: step %lld, want 20", (long long)s);
  rm_dir(d2);
  if (!mkdtemp(strcpy(d2, "/tmp/cg_test_ckpt_order.XXXXXX"))) return;
  write_run(d2, 20, 0xA, 1700000100, 0.9); /* same second, no nanoseconds (older files): */
  write_run(d2, 10, 0xA, 1700000100, -1);  /* the higher step (20, kept as best) */
  snprintf(f, sizeof f, "%s/last", d2);
  unlink(f);
  s = found(d2, &id, NULL);
  CG_TEST_CHECK(s == 20, "same second: step %lld, want 20", (long long)s);
  rm_dir(d2);
  /* a requeued attempt on a node whose clock lags: its 20 carries an earlier time than its
   * predecessor's 15, and DIR/last (20) wins */
  if (!mkdtemp(strcpy(d2, "/tmp/cg_test_ckpt_order.XXXXXX"))) return;
  write_run(d2, 15, 0xA, 1700000200, -1);
  write_run(d2, 20, 0xA, 1700000140, -1);
  s = found(d2, &id, NULL);
  CG_TEST_CHECK(s == 20, "a lagging clock: step %lld, want DIR/last's 20", (long long)s);
  printf("PASS within a run: DIR/last's file, or one written later and of a higher step (a "
         "stale DIR/last); an abandoned later step is not taken; the higher step within one "
         "second; a lagging clock does not matter\n");
  rm_dir(d2);
}

/* DIR/best names step 20 (0.7); step 20 written again without validation (a resumed branch, a
 * run started afresh): best is chosen again from the files' own figures (10: 0.5), and removed
 * when no file has any; a replacement with figures competes with the others. */
static void test_best_replaced(void) {
  char dir[] = "/tmp/cg_test_ckpt_rebest.XXXXXX";
  if (!mkdtemp(dir)) return;
  char bp[600], met[32];
  int64_t s = -1;
  double val = 0;
  write_run(dir, 10, 0xA, 1700000000, 0.5);
  write_run(dir, 20, 0xA, 1700000000, 0.7);
  write_run(dir, 30, 0xA, 1700000000, -1);
  CG_TEST_CHECK(cg_ckpt_read_pointer(dir, "best", bp, sizeof bp, &s, met, sizeof met, &val) == 0 &&
                    s == 20 && val == 0.7, "best: step %lld %g", (long long)s, val);
  write_run(dir, 20, 0xB, 1700000100, -1);
  CG_TEST_CHECK(cg_ckpt_read_pointer(dir, "best", bp, sizeof bp, &s, met, sizeof met, &val) == 0 &&
                    s == 10 && val == 0.5,
                "20 replaced without figures: best step %lld %g, want 10 (0.5)", (long long)s, val);
  { /* run A's 20 was not replaced but set aside, whole */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "test -f %s/previous-*/ckpt-0000000020.cgck", dir);
    CG_TEST_CHECK(system(cmd) == 0, "another run's checkpoint of the same step was not set aside");
  }
  write_run(dir, 10, 0xB, 1700000100, -1);
  CG_TEST_CHECK(cg_ckpt_read_pointer(dir, "best", bp, sizeof bp, &s, NULL, 0, NULL) != 0,
                "no file has figures: best still names step %lld", (long long)s);
  write_run(dir, 30, 0xB, 1700000100, 0.8);
  write_run(dir, 20, 0xC, 1700000200, 0.6); /* another run's (B's rotation keeps its 30) */
  CG_TEST_CHECK(cg_ckpt_read_pointer(dir, "best", bp, sizeof bp, &s, met, sizeof met, &val) == 0 &&
                    s == 30 && val == 0.8, "best: step %lld %g, want 30 (0.8)", (long long)s, val);
  write_run(dir, 30, 0xB, 1700000300, 0.1); /* best's file again, now worse than 20's */
  CG_TEST_CHECK(cg_ckpt_read_pointer(dir, "best", bp, sizeof bp, &s, met, sizeof met, &val) == 0 &&
                    s == 20 && val == 0.6,
                "30 replaced with a worse figure: best step %lld %g, want 20 (0.6)", (long long)s,
                val);
  /* --best-metric changed on resume: best is chosen again by the new metric (it kept the old
   * metric's pointer, which rotation could leave naming a removed file) */
  float p[NP], m[NP], v[NP];
  fill(p, m, v, 50);
  cg_ckpt_info_t in = info_at(50);
  in.run_id = 0xB;
  in.unix_time = 1700000400;
  in.best_by = CG_CKPT_BEST_LOSS;
  char err[1024], path[512];
  struct stat sb;
  CG_TEST_CHECK(cg_ckpt_write(dir, &in, p, m, v, NULL, 1, path, sizeof path, err, sizeof err) == 0,
                "write 50: %s", err);
  CG_TEST_CHECK(cg_ckpt_read_pointer(dir, "best", bp, sizeof bp, &s, met, sizeof met, &val) == 0 &&
                    !strcmp(met, "val_loss") && stat(bp, &sb) == 0,
                "after a --best-metric change: best %s by %s", bp, met);
  printf("PASS DIR/best never names a file replaced without its own figures (chosen again, or "
         "removed), and follows a --best-metric change\n");
  rm_dir(dir);
}

static int exists(const char *dir, const char *name) {
  char p[600];
  struct stat st;
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return lstat(p, &st) == 0;
}

static void touch(const char *dir, const char *name, size_t bytes) {
  char p[600];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "wb");
  for (size_t i = 0; f && i < bytes; i++) fputc(0, f);
  if (f) fclose(f);
}

/* name's times set `age` seconds back: a temporary nobody has written to for that long. */
static void age(const char *dir, const char *name, int seconds) {
  char p[600];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  const struct timespec t[2] = {{time(NULL) - seconds, 0}, {time(NULL) - seconds, 0}};
  utimensat(AT_FDCWD, p, t, AT_SYMLINK_NOFOLLOW);
}

/* The lock's holder removes the temporaries a writer killed mid-write left (a checkpoint's,
 * best's, last's, the history's), only regular files of exactly that pattern. */
static void test_stale_temps(void) {
  char dir[] = "/tmp/cg_test_ckpt_tmp.XXXXXX";
  if (!mkdtemp(dir)) return;
  const char *gone[] = {".ckpt-0000000020.cgck.Ab12Cd", ".best.XyZ123", ".last.QQ7QQQ",
                        ".history.jsonl.a1b2c3"};
  const char *kept[] = {".ckpt-0000000020.cgck.Ab12C", ".ckpt-0000000020.cgck.Ab12Cde",
                        ".ckpt-x.cgck.ABCDEF", ".notes.txt.ABCDEF", "ckpt-0000000020.cgck.Ab12Cd",
                        ".ckpt-0000000020.cgck.Ab-2Cd", "notes.txt", ".best.backup",
                        ".last.OLDONE"};
  for (int i = 0; i < 4; i++) touch(dir, gone[i], i ? 10 : 4096), age(dir, gone[i], 700);
  for (int i = 0; i < 9; i++) touch(dir, kept[i], 10), age(dir, kept[i], 700);
  /* one written to a minute ago: another node's writer may be at work (a node-local lock) */
  touch(dir, ".ckpt-0000000050.cgck.NoW123", 10);
  age(dir, ".ckpt-0000000050.cgck.NoW123", 60);
  char link[600];
  snprintf(link, sizeof link, "%s/.ckpt-0000000030.cgck.LnK123", dir);
  CG_TEST_CHECK(symlink("notes.txt", link) == 0, "symlink: %s", strerror(errno));
  char sub[600];
  snprintf(sub, sizeof sub, "%s/.ckpt-0000000040.cgck.DiR123", dir);
  mkdir(sub, 0777);
  char err[1024];
  const int fd = cg_ckpt_lock_dir(dir, "--checkpoint-dir", err, sizeof err);
  CG_TEST_CHECK(fd >= 0, "lock: %s", err);
  int bad = 0;
  for (int i = 0; i < 4; i++)
    if (exists(dir, gone[i])) bad = printf("FAIL stale temporary %s left\n", gone[i]);
  for (int i = 0; i < 9; i++)
    if (!exists(dir, kept[i])) bad = printf("FAIL %s removed: not a writer's temporary\n", kept[i]);
  if (!exists(dir, ".ckpt-0000000030.cgck.LnK123") || !exists(dir, ".ckpt-0000000040.cgck.DiR123"))
    bad = printf("FAIL a symbolic link or directory of the pattern was removed\n");
  if (!exists(dir, ".ckpt-0000000050.cgck.NoW123"))
    bad = printf("FAIL a temporary written to a minute ago was removed\n");
  CG_TEST_CHECK(!bad, "stale temporaries");
  if (!bad) printf("PASS the lock's holder removes a killed writer's temporaries, nothing else\n");
  if (fd >= 0) close(fd);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CG_TEST_CHECK(system(cmd) == 0, "rm %s", dir);
}

/* --overwrite-checkpoints: the earlier run's checkpoints, best, last and history.jsonl move into
 * DIR/previous-<time>/, unchanged; other files stay; a directory with none of them gets no
 * folder. */
static void test_set_aside(void) {
  char dir[] = "/tmp/cg_test_ckpt_aside.XXXXXX";
  if (!mkdtemp(dir)) return;
  write_run(dir, 10, 0xA, 1700000000, 0.5);
  write_run(dir, 20, 0xA, 1700000000, -1);
  touch(dir, "history.jsonl", 10);
  touch(dir, "notes.txt", 10);
  char sub[600], err[1024], p[700];
  int moved = -1;
  const int rc = cg_ckpt_set_aside(dir, sub, sizeof sub, &moved, err, sizeof err);
  CG_TEST_CHECK(rc == 0 && moved == 5 && strstr(sub, "/previous-"), "set aside: rc %d, %d moved "
                "into '%s' (%s)", rc, moved, sub, rc ? err : "");
  const char *names[] = {"ckpt-0000000010.cgck", "ckpt-0000000020.cgck", "best", "last",
                         "history.jsonl"};
  int bad = 0;
  for (int i = 0; i < 5; i++) {
    snprintf(p, sizeof p, "%s/%s", sub, names[i]);
    if (exists(dir, names[i]) || access(p, F_OK) != 0) bad = printf("FAIL %s not moved\n", names[i]);
  }
  if (!exists(dir, "notes.txt")) bad = printf("FAIL notes.txt moved\n");
  int64_t s = -1;
  uint64_t id = 0;
  if (!bad) s = found(sub, &id, NULL);
  CG_TEST_CHECK(!bad && s == 20, "the set-aside run resumes from its folder: step %lld", (long long)s);
  char sub2[600];
  CG_TEST_CHECK(cg_ckpt_set_aside(dir, sub2, sizeof sub2, &moved, err, sizeof err) == 0 &&
                    moved == 0 && !sub2[0], "nothing to set aside: %d moved, '%s'", moved, sub2);
  if (!bad && s == 20) printf("PASS --overwrite-checkpoints sets the earlier run aside in %s\n",
                              sub);
  snprintf(p, sizeof p, "rm -rf '%s'", dir);
  CG_TEST_CHECK(system(p) == 0, "rm %s", dir);
}

int main(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/cg_test_ckpt.XXXXXX");
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 1;
  }
  /* in order: each step works on the files the ones before it left */
  test_round_trip();
  test_damage();
  test_scan();
  test_rotation();
  test_rotation_foreign();
  test_header_ranges();
  test_failed_writes();

  char err[1024];
  /* clean up */
  char **paths;
  int64_t *steps;
  int n;
  if (cg_ckpt_list(g_dir, &paths, &steps, &n, err, sizeof err) == 0) {
    for (int i = 0; i < n; i++) unlink(paths[i]);
    cg_ckpt_list_free(paths, steps, n);
  }
  rmdir(g_dir);
  test_best_last();
  rm_dir(g_dir);
  test_resume_newest_run();
  test_best_replaced();
  test_stale_temps();
  test_set_aside();
  return cg_test_done("test_ckpt");
}
