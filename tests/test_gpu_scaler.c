/* test_gpu_scaler.c: fp16 dynamic loss scaling through the CUDA backend. With fault_nan_step = 2
 * the loss gradient of step 2 is made NaN:
 *  - steps 0 and 1 train normally at the initial scale 65536;
 *  - step 2 reports skipped = 1 and a NaN loss, leaves parameters and AdamW moments bitwise
 *    unchanged, and halves the scale (65536 -> 32768);
 *  - steps 3.. update the parameters again at the halved scale.
 * Small UNet (in 5, base 8, depth 3, 32x32, batch 3). Exits 77 without a usable GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "log.h"
#include "model.h"
#include "testutil.h"
#include "testutil_cuda.h"

enum { N = 3, IN_C = 5, BASE = 8, DEPTH = 3, HW = 32, STEPS = 6, FAULT = 2 };

int main(void) {
  if (cg_test_need_gpu()) return CG_TEST_SKIP;
  const cg_backend_ops_t *ops = &cg_backend_cuda;
  cg_model_t m;
  cg_buckets_t bk;
  float *p0 = cg_test_unet(&m, &bk, IN_C, BASE, DEPTH, HW, 0, 3);
  const size_t np = m.nparams;
  cg_test_data_t d = cg_test_data_make(N, HW, HW, IN_C, 1, 5); /* weights 0.5, 0.5, 0 */

  cg_backend_cfg_t cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.batch = N;
  cfg.precision = CG_PREC_FP16;
  cfg.deterministic = 1;
  cfg.dice_weight = 1.0f;
  cfg.cuda_graph = 1; /* must be turned off by the fault injection */
  cfg.buckets = &bk;
  cfg.fault_nan_step = FAULT;
  cg_backend_t *b = NULL;
  char err[1024];
  if (ops->create(&m, &cfg, &b, err, sizeof err)) CG_FATAL("cuda backend: %s", err);
  ops->set_params(b, p0);
  float *P[STEPS], *M1 = cg_malloc(sizeof(float) * np, "m"), *V1 = cg_malloc(sizeof(float) * np, "v");
  float *M2 = cg_malloc(sizeof(float) * np, "m"), *V2 = cg_malloc(sizeof(float) * np, "v");
  cg_step_out_t out[STEPS];
  cg_batch_t batch = cg_test_data_batch(&d);
  for (int k = 0; k < STEPS; k++) {
    cg_optim_t opt = {1e-3f, 0.9f, 0.999f, 1e-8f, 1e-4f, k + 1, 0.0f};
    ops->upload(b, k % 2, &batch);
    ops->upload_wait(b, k % 2);
    ops->train_step(b, k % 2, &opt);
    ops->fetch(b, &out[k]);
    P[k] = cg_malloc(sizeof(float) * np, "params");
    ops->get_params(b, P[k]);
    float scale;
    int64_t good;
    if (k == FAULT - 1) ops->get_opt_state(b, M1, V1, &scale, &good);
    if (k == FAULT) ops->get_opt_state(b, M2, V2, &scale, &good);
    printf("  step %d: loss %.6g skipped %d scale %g\n", k, out[k].loss, out[k].skipped,
           out[k].loss_scale);
  }
  for (int k = 0; k < STEPS; k++) {
    if (k == FAULT) continue;
    CG_TEST_CHECK(!out[k].skipped && isfinite(out[k].loss), "step %d: skipped %d loss %g", k,
                  out[k].skipped, out[k].loss);
    const float want = k < FAULT ? 65536.0f : 32768.0f;
    CG_TEST_CHECK(out[k].loss_scale == want, "step %d: loss scale %g, expected %g", k,
                  out[k].loss_scale, want);
    const float *before = k ? P[k - 1] : p0;
    CG_TEST_CHECK(memcmp(P[k], before, sizeof(float) * np) != 0, "step %d: parameters unchanged",
                  k);
  }
  CG_TEST_CHECK(out[FAULT].skipped == 1, "fault step: skipped %d", out[FAULT].skipped);
  CG_TEST_CHECK(isnan(out[FAULT].loss), "fault step: loss %g is not NaN", out[FAULT].loss);
  CG_TEST_CHECK(out[FAULT].loss_scale == 0.5f * out[FAULT - 1].loss_scale,
                "fault step: scale %g after %g", out[FAULT].loss_scale,
                out[FAULT - 1].loss_scale);
  CG_TEST_CHECK(memcmp(P[FAULT], P[FAULT - 1], sizeof(float) * np) == 0,
                "fault step: parameters changed");
  CG_TEST_CHECK(memcmp(M1, M2, sizeof(float) * np) == 0 && memcmp(V1, V2, sizeof(float) * np) == 0,
                "fault step: AdamW moments changed");
  float scale;
  int64_t good;
  ops->get_opt_state(b, M2, V2, &scale, &good);
  CG_TEST_CHECK(scale == 32768.0f && good == STEPS - FAULT - 1,
                "scaler state: scale %g good steps %lld", scale, (long long)good);
  ops->destroy(b);
  for (int k = 0; k < STEPS; k++) free(P[k]);
  free(M1);
  free(V1);
  free(M2);
  free(V2);
  free(p0);
  cg_test_data_free(&d);
  if (!cg_test_failures) printf("PASS fp16 overflow step skipped, scale halved, training resumes\n");
  return cg_test_done("test_gpu_scaler");
}
