/* test_preflight.c: the pre-flight memory estimate (src/run/preflight.h), the lower bound a run
 * is refused by before anything large is allocated.
 *
 *  - --ohem-thresh's keys, 4 bytes a pixel of the batch, counted with the activations on either
 *    backend (the CUDA backend allocates them at set-up, the cpu backend per loss call);
 *  - the estimate grows with the batch, with the optimizer's buffers (AdamW's two moments
 *    against SGD's one: 4 bytes a parameter each) and with --grad-accum's kept sum;
 *  - a shape far beyond any machine (base 1024, depth 6, 8192 x 8192, batch 64) is refused by
 *    cg_preflight_check on the host, naming what to reduce. */
#include <stdio.h>
#include <string.h>

#include "model.h"
#include "preflight.h"
#include "testutil.h"

int main(void) {
  cg_model_t m;
  char err[512];
  CG_TEST_CHECK(cg_model_build(&m, 5, 8, 3, 64, 64, 1, err, sizeof err) == 0, "%s", err);
  const double px = 4.0 * 64 * 64, np = (double)m.nparams;
  for (int cuda = 0; cuda < 2; cuda++) {
    const int es = cuda ? 2 : 4;
    const cg_preflight_t a = cg_preflight_estimate(&m, 4, 1, 2, cuda, es, 2, 0);
    const cg_preflight_t o = cg_preflight_estimate(&m, 4, 1, 2, cuda, es, 2, 1);
    const double da = o.acts - a.acts, dt = cuda ? o.device - a.device : o.host - a.host;
    CG_TEST_CHECK(da == 4.0 * px && dt == 4.0 * px, "%s: OHEM adds %.0f to the activations, "
                  "%.0f in all, want %.0f", cuda ? "cuda" : "cpu", da, dt, 4.0 * px);
    const cg_preflight_t b8 = cg_preflight_estimate(&m, 8, 1, 2, cuda, es, 2, 0);
    const cg_preflight_t sgd = cg_preflight_estimate(&m, 4, 1, 2, cuda, es, 1, 0);
    const cg_preflight_t acc = cg_preflight_estimate(&m, 4, 2, 2, cuda, es, 2, 0);
    CG_TEST_CHECK(b8.acts > a.acts && b8.batches > a.batches, "%s: batch 8 <= batch 4",
                  cuda ? "cuda" : "cpu");
    CG_TEST_CHECK(a.params - sgd.params == 4.0 * np && acc.params - a.params == 4.0 * np,
                  "%s: AdamW - SGD %.0f, accum %.0f, want %.0f each", cuda ? "cuda" : "cpu",
                  a.params - sgd.params, acc.params - a.params, 4.0 * np);
    printf("PASS %s: OHEM's keys %.0f bytes; batch, optimizer and --grad-accum counted\n",
           cuda ? "cuda" : "cpu", 4.0 * px);
  }
  cg_model_t big;
  CG_TEST_CHECK(cg_model_build(&big, 5, 1024, 6, 8192, 8192, 1, err, sizeof err) == 0, "%s", err);
  const cg_preflight_t e = cg_preflight_estimate(&big, 64, 1, 2, 0, 4, 2, 1);
  err[0] = 0;
  CG_TEST_CHECK(cg_preflight_check(&e, 0, 0, 1, err, sizeof err) == -1 &&
                    strstr(err, "not enough host memory") && strstr(err, "reduce --batch"),
                "a run of %.0f GiB passed: '%s'", e.host / (1 << 30), err);
  printf("PASS a run of %.0f GiB a rank is refused: %s\n", e.host / (1 << 30), err);
  return cg_test_done("test_preflight");
}
