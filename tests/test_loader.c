/* test_loader.c: the batch pipeline.
 *  - the helpers' batches equal the serial (workers = 0) batches bit for bit, whatever the
 *    number of helpers, with and without the CPU/GPU split;
 *  - batches come out in order with the sampler's indices;
 *  - memory is bounded: over thousands of batches (with metrics tasks) the process's resident
 *    size does not grow after the first few hundred batches — the ring never grows;
 *  - the metrics counted by the helpers equal a direct count;
 *  - without augmentation (--flip off, --crop off) a sample is exactly the source's pixels, and
 *    with the flips on some samples differ from them;
 *  - a zoom-out crop (scale 2) is the window padded with the ignore label. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "augment.h"
#include "feat.h"
#include "loader.h"
#include "log.h"
#include "metrics.h"
#include "source.h"
#include "testutil.h"

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, res = 0;
  if (!f) return -1;
  if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = -1;
  fclose(f);
  return res < 0 ? -1 : res * (sysconf(_SC_PAGESIZE) / 1024);
}

static cg_loader_cfg_t cfg_for(cg_source_t *src, int workers, int cpu_count, int64_t nsteps) {
  cg_loader_cfg_t c;
  memset(&c, 0, sizeof c);
  c.source = src;
  c.nsamples = src->count;
  c.ranks = 1;
  c.rank = 0;
  c.batch = 6;
  c.seed = 3;
  c.shuffle = 1;
  c.flip = CG_FLIP_HV;
  c.nfeat = CG_NFEAT;
  c.cpu_count = cpu_count;
  c.first_step = 0;
  c.nsteps = nsteps;
  c.workers = workers;
  c.nslots = 5;
  return c;
}

/* Bytes of a batch that the split makes meaningful: x of the CPU samples, rgb of the rest. */
static int same_batch(const cg_host_batch_t *a, const cg_host_batch_t *b) {
  size_t px = (size_t)a->h * a->w;
  if (a->n_cpu != b->n_cpu || a->real != b->real || a->global != b->global) return 0;
  if (memcmp(a->index, b->index, sizeof(int64_t) * a->n)) return 0;
  if (memcmp(a->y, b->y, px * a->n) || memcmp(a->weight, b->weight, sizeof(float) * a->n)) return 0;
  if (memcmp(a->x, b->x, sizeof(float) * px * a->c * a->n_cpu)) return 0;
  return memcmp(a->rgb + px * 3 * a->n_cpu, b->rgb + px * 3 * a->n_cpu,
                px * 3 * (a->n - a->n_cpu)) == 0;
}

/* The share of mask's n pixels that its most frequent label holds among those not 255, and
 * whether it has two labels or more: counted here, not by cg_augment_cat_ok. */
static double top_share(const uint8_t *mask, size_t n, int *several) {
  int64_t c[256] = {0}, all = 0, top = 0;
  for (size_t i = 0; i < n; i++)
    if (mask[i] != 255) c[mask[i]]++;
  int labels = 0;
  for (int v = 0; v < 256; v++) {
    all += c[v];
    labels += c[v] > 0;
    if (c[v] > top) top = c[v];
  }
  *several = labels > 1;
  return all ? (double)top / (double)all : 1.0;
}

/* The test's own reading of the --crop-cat-max 0.75 rule for sample idx of src (24 x 24): its
 * window of side `scale`, tried with padding 255 (left out by top_share) and moved until its
 * mask passes, at most `tries` times; win gets the window with pad `pad`. Returns the windows
 * refused. */
static int rule_window(cg_source_t *src, uint64_t seed, int64_t epoch, int64_t idx, double scale,
                       int tries, int pad, cg_crop_t *win) {
  uint8_t mk[24 * 24], tmp[24 * 24 * 4];
  char err[256];
  *win = cg_augment_window(seed, epoch, idx, scale, scale);
  win->pad = 255; /* the tries' padding */
  int several, t = 0;
  for (; t < tries; t++) {
    CG_ASSERT(cg_source_load_win(src, idx, win, NULL, mk, tmp, err, sizeof err) == 0);
    if (top_share(mk, sizeof mk, &several) < 0.75 && several) break;
    cg_augment_window_again(seed, epoch, idx, t + 1, win);
  }
  win->pad = pad;
  return t;
}

/* 1 when sample i of batch b is not src's window win (24 x 24, image and mask). */
static int differs(cg_source_t *src, const cg_host_batch_t *b, int i, const cg_crop_t *win) {
  const size_t px = 24 * 24;
  uint8_t r[24 * 24 * 3], mk[24 * 24], tmp[24 * 24 * 4];
  char err[256];
  CG_ASSERT(cg_source_load_win(src, b->index[i], win, r, mk, tmp, err, sizeof err) == 0);
  return memcmp(b->rgb + i * px * 3, r, px * 3) || memcmp(b->y + i * px, mk, px);
}

/* --crop-cat-max with zoom-out windows of a binary run without an ignore label: the padding
 * (label 0 in the sample) is not counted while the windows are tried (they pad with 255), so
 * the windows that hold shapes pass (counting the padding as background would refuse every one
 * of these: 3/4 of a window twice the sample's side is padding). */
static void test_cat_max_padding(void) {
  cg_source_t *sb = cg_source_synthetic(13, 0, 48, 24, 24);
  cg_loader_cfg_t c = cfg_for(sb, 1, 0, 6);
  c.flip = 0;
  c.crop = 1;
  c.crop_lo = c.crop_hi = 2.0;
  c.cat_max = 0.75;
  cg_loader_t *l = cg_loader_create(&c);
  int seen = 0, bad = 0, first = 0;
  for (int k = 0; k < 6; k++) {
    cg_host_batch_t *b = cg_loader_next(l, NULL);
    CG_ASSERT(b != NULL);
    for (int i = 0; i < b->n; i++) {
      if (b->index[i] < 0) continue;
      cg_crop_t win; /* the sample's padding: background */
      first += rule_window(sb, c.seed, b->epoch, b->index[i], 2.0, CG_CROP_CAT_TRIES, 0,
                           &win) == 0;
      bad += differs(sb, b, i, &win);
      seen++;
    }
    cg_loader_release(l, b, 0);
  }
  cg_loader_destroy(l);
  cg_source_destroy(sb);
  CG_TEST_CHECK(bad == 0 && first > 0, "--crop-cat-max, zoom-out, no ignore label: %d of %d "
                "samples differ from the rule's window; %d first windows taken", bad, seen, first);
  printf("%s crop-cat-max with zoom-out padding and no ignore label: %d of %d first windows "
         "taken, the padding not counted\n", bad == 0 && first > 0 ? "PASS" : "FAIL", first,
         seen);
}

/* 5. --crop-cat-max 0.75 (mmsegmentation's cat_max_ratio): each sample is the window the rule
 * picks (the first whose mask has two labels and none on 75% of its labelled pixels, trying a
 * new place of the same side up to 10 times, the 11th taken as it is), read masks-only first;
 * the samples pass the rule far more often than the first windows do (measured: 31 of 36, the
 * first windows 15). */
static void test_cat_max(void) {
  uint8_t m[4] = {0, 0, 0, 1}, z[4] = {255, 255, 2, 2};
  CG_TEST_CHECK(!cg_augment_cat_ok(m, 4, -1, 0.75) && cg_augment_cat_ok(m, 4, -1, 0.76) &&
                    cg_augment_cat_ok(m, 4, -1, 1.0) && !cg_augment_cat_ok(z, 4, 255, 0.99) &&
                    cg_augment_cat_ok(z, 4, -1, 0.51),
                "cg_augment_cat_ok: 3 of 4 is not below 0.75; one label besides 255 fails");
  cg_source_t *sk = cg_source_synthetic_k(12, 0, 48, 24, 24, 3, 255);
  const size_t px = 24 * 24;
  int seen = 0, bad = 0, pass_first = 0, pass_rule = 0, moved = 0;
  for (int on = 0; on < 2; on++) {
    cg_loader_cfg_t c = cfg_for(sk, 1, 0, 6);
    c.flip = 0;
    c.crop = 1;
    c.crop_lo = c.crop_hi = 0.4;
    c.nclass = 3;
    c.ignore_index = 255;
    c.cat_max = on ? 0.75 : 1.0;
    cg_loader_t *l = cg_loader_create(&c);
    for (int k = 0; k < 6; k++) {
      cg_host_batch_t *b = cg_loader_next(l, NULL);
      CG_ASSERT(b != NULL && b->n_cpu == 0);
      for (int i = 0; i < b->n; i++) {
        if (b->index[i] < 0) continue;
        cg_crop_t win; /* the ignore label pads */
        moved += rule_window(sk, c.seed, b->epoch, b->index[i], 0.4, on ? CG_CROP_CAT_TRIES : 0,
                             255, &win) > 0;
        bad += differs(sk, b, i, &win);
        int several;
        const int ok = top_share(b->y + i * px, px, &several) < 0.75 && several;
        *(on ? &pass_rule : &pass_first) += ok;
        seen += on;
      }
      cg_loader_release(l, b, 0);
    }
    cg_loader_destroy(l);
  }
  cg_source_destroy(sk);
  const int good = bad == 0 && moved > 0 && pass_rule > pass_first && pass_rule >= seen * 3 / 4;
  CG_TEST_CHECK(good,
                "--crop-cat-max: %d samples differ from the rule's window; %d of %d moved; %d "
                "pass (first windows: %d)", bad, moved, seen, pass_rule, pass_first);
  printf("%s crop-cat-max 0.75: %d of %d samples' windows moved; %d pass the rule (the first "
         "windows: %d)\n", good ? "PASS" : "FAIL", moved, seen, pass_rule, pass_first);
  test_cat_max_padding();
}

int main(void) {
  cg_source_t *src = cg_source_synthetic(11, 0, 100, 24, 24);
  /* 1. helpers = serial, bit for bit, at several helper counts and splits */
  for (int split = 0; split < 2; split++) {
    int cpu_count = split ? 2 : -1;
    cg_loader_cfg_t cs = cfg_for(src, 0, cpu_count, 40);
    cg_loader_t *serial = cg_loader_create(&cs);
    cg_host_batch_t *ref[40];
    /* keep copies of the serial batches (the ring reuses slots) */
    size_t px = 24 * 24;
    uint8_t *store = cg_malloc(40 * (sizeof(float) * px * 5 * 6 + px * 3 * 6 + px * 6 + 6 * 12), "store");
    for (int k = 0; k < 40; k++) {
      cg_host_batch_t *b = cg_loader_next(serial, NULL);
      CG_ASSERT(b != NULL);
      ref[k] = cg_malloc(sizeof **ref, "ref");
      *ref[k] = *b;
      uint8_t *p = store + (size_t)k * (sizeof(float) * px * 5 * 6 + px * 3 * 6 + px * 6 + 6 * 12);
      ref[k]->x = (float *)p; memcpy(ref[k]->x, b->x, sizeof(float) * px * 5 * 6); p += sizeof(float) * px * 5 * 6;
      ref[k]->rgb = p; memcpy(ref[k]->rgb, b->rgb, px * 3 * 6); p += px * 3 * 6;
      ref[k]->y = p; memcpy(ref[k]->y, b->y, px * 6); p += px * 6;
      ref[k]->weight = (float *)p; memcpy(ref[k]->weight, b->weight, 6 * 4); p += 6 * 4;
      ref[k]->index = (int64_t *)p; memcpy(ref[k]->index, b->index, 6 * 8);
      CG_TEST_CHECK(b->step == k, "serial batch %d has step %lld", k, (long long)b->step);
      cg_loader_release(serial, b, 0);
    }
    CG_TEST_CHECK(cg_loader_next(serial, NULL) == NULL, "serial loader ran past its steps");
    cg_loader_destroy(serial);
    for (int workers = 1; workers <= 4; workers += 3) {
      cg_loader_cfg_t cw = cfg_for(src, workers, cpu_count, 40);
      cg_loader_t *ld = cg_loader_create(&cw);
      int bad = 0;
      for (int k = 0; k < 40; k++) {
        cg_host_batch_t *b = cg_loader_next(ld, NULL);
        CG_ASSERT(b != NULL);
        bad += !same_batch(b, ref[k]);
        cg_loader_release(ld, b, 0);
      }
      cg_loader_destroy(ld);
      CG_TEST_CHECK(bad == 0, "%d of 40 batches differ with %d helpers (split %d)", bad, workers, split);
      if (!bad) printf("PASS %d helper(s), split %s: 40 batches bitwise equal to the serial ones\n",
                       workers, split ? "2/6 on the CPU" : "all on the CPU");
    }
    for (int k = 0; k < 40; k++) free(ref[k]);
    free(store);
  }
  /* 2. bounded memory and helper-counted metrics over a long run */
  const int64_t steps = 6000;
  cg_loader_cfg_t cl = cfg_for(src, 2, -1, steps);
  cg_loader_t *ld = cg_loader_create(&cl);
  cg_confusion_t direct = {0, 0, 0, 0}, helpers = {0, 0, 0, 0};
  long rss_warm = 0, rss_peak = 0;
  for (int64_t k = 0; k < steps; k++) {
    cg_host_batch_t *b = cg_loader_next(ld, NULL);
    CG_ASSERT(b != NULL && b->step == k);
    size_t px = (size_t)b->h * b->w;
    /* a made-up prediction: the mask shifted by one pixel */
    for (int i = 0; i < b->n; i++)
      for (size_t j = 0; j < px; j++) b->pred[i * px + j] = b->y[i * px + (j + 1) % px];
    for (int i = 0; i < b->n; i++)
      if (b->index[i] >= 0) cg_confusion_add(&direct, b->pred + i * px, b->y + i * px, px);
    cg_loader_release(ld, b, 1);
    if (k == 300) rss_warm = rss_kb();
    if (k > 300) {
      long r = rss_kb();
      if (r > rss_peak) rss_peak = r;
    }
  }
  cg_loader_take_confusion(ld, &helpers);
  cg_loader_destroy(ld);
  CG_TEST_CHECK(memcmp(&direct, &helpers, sizeof direct) == 0,
                "helpers counted tp %lld fp %lld fn %lld tn %lld, direct %lld %lld %lld %lld",
                (long long)helpers.tp, (long long)helpers.fp, (long long)helpers.fn,
                (long long)helpers.tn, (long long)direct.tp, (long long)direct.fp,
                (long long)direct.fn, (long long)direct.tn);
  printf("resident size after 300 batches %ld kB, peak over the next %lld batches %ld kB\n",
         rss_warm, (long long)(steps - 300), rss_peak);
  CG_TEST_CHECK(rss_warm > 0 && rss_peak - rss_warm < 1024,
                "memory grew by %ld kB over %lld batches", rss_peak - rss_warm, (long long)steps);
  /* 3. --flip off: the source's pixels as they are; on: flipped ones among them */
  for (int aug = 0; aug < 2; aug++) {
    cg_loader_cfg_t cf = cfg_for(src, 1, 0, 10); /* no sample featurised: rgb holds the pixels */
    cf.flip = aug ? CG_FLIP_HV : 0;
    cg_loader_t *lf = cg_loader_create(&cf);
    const size_t px = 24 * 24;
    uint8_t rgb[24 * 24 * 3], mask[24 * 24];
    char err[256];
    int differ = 0, seen = 0;
    for (int k = 0; k < 10; k++) {
      cg_host_batch_t *b = cg_loader_next(lf, NULL);
      CG_ASSERT(b != NULL && b->n_cpu == 0);
      for (int i = 0; i < b->n; i++) {
        if (b->index[i] < 0) continue;
        CG_ASSERT(cg_source_load(src, b->index[i], rgb, mask, err, sizeof err) == 0);
        differ += memcmp(b->rgb + i * px * 3, rgb, px * 3) || memcmp(b->y + i * px, mask, px);
        seen++;
      }
      cg_loader_release(lf, b, 0);
    }
    cg_loader_destroy(lf);
    if (!aug)
      CG_TEST_CHECK(differ == 0, "flip off: %d of %d samples differ from the source", differ, seen);
    else
      CG_TEST_CHECK(differ > seen / 2, "flip on: only %d of %d samples flipped", differ, seen);
    printf("%s flips %s: %d of %d samples differ from the source's pixels\n",
           differ == 0 || aug ? "PASS" : "FAIL", aug ? "on" : "off", differ, seen);
  }
  cg_source_destroy(src);
  /* 4. zoom-out crops (--crop-scale above 1): the part of the window outside the sample is
   * padded with the ignore label (K >= 2), the window being the sampler's own */
  cg_source_t *sk = cg_source_synthetic_k(12, 0, 40, 24, 24, 3, 255);
  cg_loader_cfg_t cz = cfg_for(sk, 1, 0, 6);
  cz.flip = 0;
  cz.crop = 1;
  cz.crop_lo = cz.crop_hi = 2.0;
  cz.nclass = 3;
  cz.ignore_index = 255;
  cg_loader_t *lz = cg_loader_create(&cz);
  const size_t pz = 24 * 24;
  uint8_t zr[24 * 24 * 3], zm[24 * 24], tmp[24 * 24 * 4];
  char zerr[256];
  int zbad = 0, zseen = 0;
  int64_t padded = 0;
  for (int k = 0; k < 6; k++) {
    cg_host_batch_t *b = cg_loader_next(lz, NULL);
    CG_ASSERT(b != NULL && b->n_cpu == 0);
    for (int i = 0; i < b->n; i++) {
      if (b->index[i] < 0) continue;
      cg_crop_t win = cg_augment_window(cz.seed, b->epoch, b->index[i], 2.0, 2.0);
      win.pad = 255;
      CG_ASSERT(cg_source_load_win(sk, b->index[i], &win, zr, zm, tmp, zerr, sizeof zerr) == 0);
      zbad += memcmp(b->rgb + i * pz * 3, zr, pz * 3) || memcmp(b->y + i * pz, zm, pz);
      for (size_t j = 0; j < pz; j++) padded += zm[j] == 255;
      zseen++;
    }
    cg_loader_release(lz, b, 0);
  }
  cg_loader_destroy(lz);
  cg_source_destroy(sk);
  /* a window twice the sample's side holds it on a quarter of its area */
  const double share = (double)padded / ((double)zseen * pz);
  CG_TEST_CHECK(zbad == 0 && share > 0.7 && share < 0.8,
                "zoom-out crops: %d of %d samples differ from the window padded with 255, "
                "%.3f of the pixels padded (want about 0.75)", zbad, zseen, share);
  printf("PASS zoom-out crops: %d samples padded with the ignore label (%.3f of the pixels)\n",
         zseen, share);
  test_cat_max();
  return cg_test_done("test_loader");
}
