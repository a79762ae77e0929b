/* fuzz_ckpt.c: the checkpoint reader (src/run/ckpt.c) on every path that reads a file:
 *   - `cogpu-dist inspect FILE` and `inspect DIR` (verify only, then print the header);
 *   - the resume path: cg_ckpt_read into the model's arrays with the run's shape, and
 *     cg_ckpt_find over a directory holding the input (what --resume DIR does);
 *   - rotation after a write, which reads the run id of the checkpoints beside it.
 *
 * The shape wanted is the seed run's model (make_seeds.sh trains it for 2 steps; the
 * CMakeLists passes its base, depth and size as CG_FUZZ_SEED_*), with in_c 3 + CG_NFEAT as train.c
 * builds it. Each input runs as given and with its payload and header CRCs recomputed
 * (cg_fuzz_fix_ckpt); only the latter gets past the header CRC. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt.h"      // cg_ckpt_read, cg_ckpt_find, cg_ckpt_inspect_main, cg_ckpt_write
#include "feat.h"
#include "fuzz_util.h" // cg_fuzz_*: memfd inputs, scratch directories, CRC fixers
#include "le.h"        // cg_le_get_u64 (the input's run id)
#include "model.h"     // cg_model_build: the shape and parameter count a resuming run wants
#include "run_settings.h" // cg_settings_state: early stopping's and the plateau's states

static cg_fuzz_file_t g_in;
static const char *g_dir;   /* holds the input as ckpt-0000000000.cgck */
static cg_ckpt_shape_t g_want;
static float *g_p, *g_m, *g_v, *g_t;

static void fail(const char *what) {
  fprintf(stderr, "fuzz_ckpt: %s\n", what);
  abort();
}

static void report(void *ctx, const char *line) {
  (void)ctx;
  if (!line || !line[0]) fail("cg_ckpt_find reported an empty line");
}

static void run(const uint8_t *data, size_t n) {
  char err[1024], path[512];
  cg_ckpt_info_t info;
  cg_fuzz_file_put(&g_in, data, n);

  /* inspect FILE: verify only */
  err[0] = 0;
  cg_ckpt_status_t vs = cg_ckpt_read(g_in.path, NULL, &info, NULL, NULL, NULL, NULL, err,
                                     sizeof err);
  if (vs != CG_CKPT_OK && !err[0]) fail("a rejected checkpoint without a message");
  char *argv[] = {"inspect", g_in.path, NULL};
  cg_ckpt_inspect_main(2, argv);

  /* resume FILE: into the run's arrays, with its shape */
  cg_ckpt_status_t rs = cg_ckpt_read(g_in.path, &g_want, &info, g_p, g_m, g_v, g_t, err,
                                     sizeof err); /* and --ema-decay's training weights */
  if (rs == CG_CKPT_OK && (info.shape.nparams != g_want.nparams || info.step < 0))
    fail("accepted a checkpoint of another shape");
  if (vs == CG_CKPT_OK && rs != CG_CKPT_OK && rs != CG_CKPT_ESHAPE)
    fail("valid for inspect but not for resume, for another reason than the shape");
  /* the schedules' states a resume takes back from the settings (run_setup.c), and the check
   * that makes their counts safe to cast */
  for (int k = 0; rs == CG_CKPT_OK && k < 4; k++) {
    double v[4];
    char other[32] = "";
    const int got = cg_settings_state(info.settings, k & 1 ? "plateau-state" : "early-stop-state",
                                      k & 2 ? "loss" : "iou", v, (k & 1) + 3, other, sizeof other);
    if (got < 0 && !other[0]) fail("a state of another figure without its name");
    for (int i = 0; got > 0 && i < (k & 1) + 3; i++) {
      if (isnan(v[i])) fail("a state read with a NaN");
      if (cg_settings_count(v[i]) && (double)(int64_t)v[i] != v[i]) fail("a count not whole");
    }
  }

  /* resume DIR and inspect DIR: the list, newest first, and the one --resume picks */
  snprintf(path, sizeof path, "%s/ckpt-0000000001.cgck", g_dir);
  unlink(path); /* left by the previous input's rotation: each input starts alike */
  cg_fuzz_write_file(g_dir, "ckpt-0000000000.cgck", data, n);
  cg_ckpt_find(g_dir, &g_want, &info, g_p, g_m, g_v, g_t, path, sizeof path, report, NULL, err,
               sizeof err);
  argv[1] = (char *)g_dir;
  cg_ckpt_inspect_main(2, argv);

  /* rotation: a write of step 1 with keep 1 in the input's own run reads the input's header
   * to decide whether it may remove it (an older step of the same run: yes). */
  if (n >= 256 && vs == CG_CKPT_OK) {
    cg_ckpt_info_t w;
    memset(&w, 0, sizeof w);
    w.shape = (cg_ckpt_shape_t){1, 1, 1, 16, 16, 1, 1};
    w.step = 1;
    w.steps_per_epoch = w.train_samples = w.ranks = w.batch = 1;
    w.loss_scale = 1;
    w.run_id = cg_le_get_u64(data + 172);
    float one = 1;
    if (cg_ckpt_write(g_dir, &w, &one, &one, &one, NULL, 1, NULL, 0, err, sizeof err))
      fail("cannot write a checkpoint to the scratch directory");
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  cg_fuzz_devnull(1); /* inspect prints its verdicts to stdout */
  cg_fuzz_file_open(&g_in, "ckpt.cgck");
  g_dir = cg_fuzz_tmpdir("ckpt");
  static cg_model_t m;
  char err[256];
  if (cg_model_build(&m, 3 + CG_NFEAT, CG_FUZZ_SEED_BASE, CG_FUZZ_SEED_DEPTH,
                     CG_FUZZ_SEED_SIZE, CG_FUZZ_SEED_SIZE, 1, err, sizeof err))
    fail(err);
  g_want = (cg_ckpt_shape_t){m.in_c, m.base, m.depth, m.height, m.width, (uint64_t)m.nparams, 1};
  g_p = malloc(sizeof(float) * m.nparams);
  g_m = malloc(sizeof(float) * m.nparams);
  g_v = malloc(sizeof(float) * m.nparams);
  g_t = malloc(sizeof(float) * m.nparams);
  if (!g_p || !g_m || !g_v || !g_t) fail("out of memory");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  cg_fuzz_both(data, n, cg_fuzz_fix_ckpt, run);
  return 0;
}
