/* test_sampler.c: the per-rank sampler (sampler.h) over awkward sizes.
 *
 * For every (n, ranks, batch): all ranks have the same step count; one epoch over all ranks
 * covers every index exactly once; padding (-1) only at the end of a rank's batch and only in
 * the last step; `global` is the step's real count on every rank; the concatenation of ranks
 * 0..R-1 equals one rank with batch R*B; same seed -> same batches, other epoch or seed -> other
 * order; shuffle = 0 gives identity order. Micro-batches (--grad-accum A): R ranks x A
 * micro-batches take, micro-batch m of rank r, what rank m*R + r of R*A ranks takes, with the
 * whole step's global count. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"
#include "testutil.h"

#define MAXR 5
#define MAXB 7

/* One epoch of every rank, checked; fills order[] with the concatenated real indices. */
static void check_epoch(int64_t n, int ranks, int batch, uint64_t seed, int64_t epoch,
                        int shuffle, int64_t *order) {
  cg_sampler_t s[MAXR], one;
  for (int r = 0; r < ranks; r++) {
    cg_sampler_init(&s[r], n, ranks, r, batch, seed);
    s[r].shuffle = shuffle;
  }
  cg_sampler_init(&one, n, 1, 0, ranks * batch, seed);
  one.shuffle = shuffle;
  const int64_t steps = cg_sampler_steps_per_epoch(&s[0]);
  const int64_t g = (int64_t)ranks * batch;
  CG_TEST_CHECK(steps == (n + g - 1) / g, "n %lld R %d B %d: steps %lld", (long long)n, ranks,
                batch, (long long)steps);
  CG_TEST_CHECK(cg_sampler_steps_per_epoch(&one) == steps, "1-rank steps differ");
  int *seen = calloc((size_t)n, sizeof *seen);
  int64_t idx[MAXR * MAXB], ref[MAXR * MAXB];
  int64_t norder = 0;
  for (int64_t st = 0; st < steps; st++) {
    int gsum = 0, gref = -1;
    for (int r = 0; r < ranks; r++) {
      CG_TEST_CHECK(cg_sampler_steps_per_epoch(&s[r]) == steps, "rank %d step count", r);
      int gl = -7;
      int real = cg_sampler_batch(&s[r], epoch, st, idx + (size_t)r * batch, &gl);
      const int64_t *b = idx + (size_t)r * batch;
      CG_TEST_CHECK(real >= 0 && real <= batch, "real %d", real);
      for (int i = 0; i < batch; i++) {
        if (i < real) {
          CG_TEST_CHECK(b[i] >= 0 && b[i] < n, "index %lld out of range", (long long)b[i]);
          if (b[i] >= 0 && b[i] < n) seen[b[i]]++;
          order[norder++] = b[i];
        } else {
          CG_TEST_CHECK(b[i] == -1, "n %lld R %d B %d step %lld rank %d: pad slot %d = %lld",
                        (long long)n, ranks, batch, (long long)st, r, i, (long long)b[i]);
        }
      }
      if (st < steps - 1)
        CG_TEST_CHECK(real == batch, "padding before the last step (step %lld rank %d real %d)",
                      (long long)st, r, real);
      if (gref < 0) gref = gl;
      CG_TEST_CHECK(gl == gref, "rank %d global %d != rank 0's %d", r, gl, gref);
      gsum += real;
    }
    const int64_t left = n - st * g;
    CG_TEST_CHECK(gref == (left < g ? left : g), "global %d, expected %lld", gref,
                  (long long)(left < g ? left : g));
    CG_TEST_CHECK(gsum == gref, "sum of real %d != global %d", gsum, gref);
    int gone = -1;
    int rone = cg_sampler_batch(&one, epoch, st, ref, &gone);
    CG_TEST_CHECK(rone == gref && gone == gref, "1-rank real %d global %d vs %d", rone, gone,
                  gref);
    CG_TEST_CHECK(memcmp(idx, ref, sizeof(int64_t) * (size_t)g) == 0,
                  "n %lld R %d B %d step %lld: ranks concatenated != 1 rank x batch %lld",
                  (long long)n, ranks, batch, (long long)st, (long long)g);
  }
  int64_t bad = 0;
  for (int64_t i = 0; i < n; i++) bad += seen[i] != 1;
  CG_TEST_CHECK(bad == 0 && norder == n,
                "n %lld R %d B %d epoch %lld: %lld indices not seen exactly once (%lld drawn)",
                (long long)n, ranks, batch, (long long)epoch, (long long)bad, (long long)norder);
  free(seen);
  for (int r = 0; r < ranks; r++) cg_sampler_free(&s[r]);
  cg_sampler_free(&one);
}

/* The concatenated order of one epoch of a 1-rank sampler. */
static void epoch_order(cg_sampler_t *s, int64_t epoch, int64_t *out) {
  int64_t steps = cg_sampler_steps_per_epoch(s), k = 0;
  int64_t *idx = malloc(sizeof *idx * (size_t)s->batch);
  for (int64_t st = 0; st < steps; st++) {
    int real = cg_sampler_batch(s, epoch, st, idx, NULL);
    for (int i = 0; i < real; i++) out[k++] = idx[i];
  }
  free(idx);
}

/* R ranks x A micro-batches against R*A ranks, for every step of two epochs. */
static int check_micro(int64_t n, int ranks, int accum, int batch) {
  cg_sampler_t s, w;
  int bad = 0;
  for (int r = 0; r < ranks; r++) {
    cg_sampler_init(&s, n, ranks, r, batch, 99);
    cg_sampler_set_accum(&s, accum);
    const int64_t steps = cg_sampler_steps_per_epoch(&s);
    for (int m = 0; m < accum; m++) {
      cg_sampler_init(&w, n, ranks * accum, m * ranks + r, batch, 99);
      bad |= cg_sampler_steps_per_epoch(&w) != steps;
      for (int64_t e = 0; e < 2; e++)
        for (int64_t st = 0; st < steps; st++) {
          int64_t a[MAXB], b[MAXB];
          int ga = -1, gb = -2;
          const int ra = cg_sampler_micro(&s, e, st, m, a, &ga);
          const int rb = cg_sampler_batch(&w, e, st, b, &gb);
          bad |= ra != rb || ga != gb || memcmp(a, b, sizeof(int64_t) * (size_t)batch);
        }
      cg_sampler_free(&w);
    }
    cg_sampler_free(&s);
  }
  CG_TEST_CHECK(!bad, "n %lld: %d ranks x %d micro-batches of %d differ from %d ranks",
                (long long)n, ranks, accum, batch, ranks * accum);
  return !bad;
}

int main(void) {
  /* ---- micro-batches (--grad-accum) ---- */
  int mconf = 0, mok = 0;
  const int64_t mn[] = {1, 7, 12, 13, 100};
  for (size_t in = 0; in < sizeof mn / sizeof mn[0]; in++)
    for (int ranks = 1; ranks <= 3; ranks++)
      for (int accum = 1; accum <= 4; accum++)
        for (int batch = 1; batch <= 5; batch += 2, mconf++)
          mok += check_micro(mn[in], ranks, accum, batch);
  printf("%s micro-batches: %d of %d (n, ranks, accum, batch) equal R*A ranks\n",
         mok == mconf ? "PASS" : "FAIL", mok, mconf);
  /* ---- structural checks over awkward sizes ---- */
  const int64_t ns[] = {1, 2, 3, 5, 7, 11, 12, 13, 34, 35, 36, 100, 211};
  int64_t *order = malloc(sizeof *order * 256);
  int configs = 0;
  for (size_t in = 0; in < sizeof ns / sizeof ns[0]; in++)
    for (int ranks = 1; ranks <= MAXR; ranks++)
      for (int batch = 1; batch <= MAXB; batch++)
        for (int64_t epoch = 0; epoch < 2; epoch++)
          for (int shuffle = 0; shuffle < 2; shuffle++) {
            check_epoch(ns[in], ranks, batch, 1234, epoch, shuffle, order);
            configs++;
            if (!shuffle)
              for (int64_t i = 0; i < ns[in]; i++)
                if (order[i] != i) {
                  CG_TEST_CHECK(order[i] == i, "shuffle 0: position %lld holds %lld",
                                (long long)i, (long long)order[i]);
                  break;
                }
          }
  printf("PASS structure: %d (n, ranks, batch, epoch, shuffle) configurations\n", configs);

  /* ---- defaults and n = 0 ---- */
  cg_sampler_t s;
  cg_sampler_init(&s, 0, 3, 1, 4, 1);
  CG_TEST_CHECK(s.shuffle == 1 && s.perm_epoch == -1 && s.perm == NULL, "init defaults");
  CG_TEST_CHECK(cg_sampler_steps_per_epoch(&s) == 0, "n = 0: steps %lld",
                (long long)cg_sampler_steps_per_epoch(&s));
  cg_sampler_free(&s);
  cg_sampler_free(NULL);

  /* ---- determinism and variety ---- */
  const int64_t n = 1000;
  int64_t *a = malloc(sizeof *a * n), *b = malloc(sizeof *b * n), *c = malloc(sizeof *c * n);
  cg_sampler_t s1, s2, s3;
  cg_sampler_init(&s1, n, 1, 0, 7, 42);
  cg_sampler_init(&s2, n, 1, 0, 7, 42);
  cg_sampler_init(&s3, n, 1, 0, 7, 43);
  epoch_order(&s1, 3, a);
  epoch_order(&s2, 0, b); /* s2 caches another epoch first, then must agree with s1 */
  epoch_order(&s2, 3, b);
  CG_TEST_CHECK(memcmp(a, b, sizeof *a * n) == 0, "same seed and epoch, different order");
  epoch_order(&s1, 4, b);
  CG_TEST_CHECK(memcmp(a, b, sizeof *a * n) != 0, "epochs 3 and 4 have the same order");
  epoch_order(&s3, 3, c);
  CG_TEST_CHECK(memcmp(a, c, sizeof *a * n) != 0, "seeds 42 and 43 have the same order");
  int64_t fixed = 0;
  for (int64_t i = 0; i < n; i++) fixed += a[i] == i;
  CG_TEST_CHECK(fixed < 10, "%lld fixed points of a shuffled 1000-permutation", (long long)fixed);
  /* Going back to an earlier epoch recomputes the same permutation. */
  epoch_order(&s1, 3, b);
  CG_TEST_CHECK(memcmp(a, b, sizeof *a * n) == 0, "epoch 3 again differs");
  printf("PASS determinism (fixed points of one shuffle: %lld)\n", (long long)fixed);
  cg_sampler_free(&s1);
  cg_sampler_free(&s2);
  cg_sampler_free(&s3);

  /* ---- uniformity: where index 0 lands, over many epochs (n = 8) ---- */
  {
    enum { N8 = 8, EPOCHS = 8000 };
    int64_t counts[N8][N8] = {{0}};
    int64_t o[N8];
    cg_sampler_t u;
    cg_sampler_init(&u, N8, 1, 0, 3, 99);
    for (int64_t e = 0; e < EPOCHS; e++) {
      epoch_order(&u, e, o);
      for (int p = 0; p < N8; p++) counts[o[p]][p]++;
    }
    cg_sampler_free(&u);
    /* Each (index, position) cell expects 1000; a 5-sigma band is about +-165. */
    int64_t worst = 0;
    for (int i = 0; i < N8; i++)
      for (int p = 0; p < N8; p++) {
        int64_t d = counts[i][p] - EPOCHS / N8;
        if (d < 0) d = -d;
        if (d > worst) worst = d;
      }
    CG_TEST_CHECK(worst < 165, "index/position counts off by %lld of %d", (long long)worst,
                  EPOCHS / N8);
    printf("PASS uniformity (worst cell deviation %lld of %d)\n", (long long)worst, EPOCHS / N8);
  }

  free(a);
  free(b);
  free(c);
  free(order);
  return cg_test_done("test_sampler");
}
