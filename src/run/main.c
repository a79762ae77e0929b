/* main.c: cogpu-dist entry point — MPI start-up, command-line parsing and command dispatch.
 *
 * MPI starts first so that a usage error is printed once (by rank 0) and every rank exits
 * with code 2 without entering any collective. The single-process tools (pack, inspect, export,
 * import) are dispatched before MPI starts: they must work where no MPI runtime is set up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas_core.h"   /* cg_blas_pick_core: OpenBLAS's kernels for this CPU */
#include "comm.h"         /* cg_comm_init/finalize: MPI, this rank's place in the job */
#include "ckpt.h"         /* cg_ckpt_inspect_main: `inspect`, what a checkpoint holds */
#include "cli.h"          /* cg_cli_parse, cg_cli_print_help: train's and info's command line */
#include "config.h"       /* cg_config_t: the parsed command line */
#include "export.h"       /* cg_export_main, cg_import_main: `export`, `import` */
#include "feat.h"         /* CG_NFEAT: the feature channels beside RGB (info --model) */
#include "guard.h"        /* cg_guard_catch_early, cg_guard_failed: stop signals */
#include "init_from.h"    /* cg_init_from_settings: --init-from's model */
#include "log.h"          /* CG_EXIT_USAGE */
#include "model.h"        /* cg_model_build, cg_model_print: info --model */
#include "colors.h"       /* cg_colors_main: `colors-to-ids`, colour masks into class ids */
#include "pack.h"         /* cg_pack_main: `pack`, images and masks into a .cgds shard */
#include "predict.h"      /* cg_predict_run: `predict`, with its own flags */
#include "run_settings.h" /* cg_settings_resume: --resume's settings from the checkpoint */
#include "source.h"       /* cg_source_open_opts, cg_source_split: info --split */
#include "topo.h"         /* cg_topo_create, cg_topo_report: info --topology */
#include "train.h"        /* cg_train_run: `train` */

/* A sample's name on a line of its own, control bytes and backslashes escaped (\n, \t, \\,
 * \xNN): a name holding a newline stays one line for a script reading the list. */
static void put_name(const char *s) {
  for (; *s; s++) {
    const unsigned char c = (unsigned char)*s;
    if (c == '\\') fputs("\\\\", stdout);
    else if (c == '\n') fputs("\\n", stdout);
    else if (c == '\t') fputs("\\t", stdout);
    else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
    else putchar(c);
  }
  putchar('\n');
}

/* info --split: every sample of --data as "train NAME" or "val NAME" (put_name), as train's
 * --val-fraction splits it (cg_source_split: by a hash of the names). Rank 0 only. */
static int print_split(const cg_config_t *cfg) {
  if (!strcmp(cfg->data, "synthetic")) {
    fprintf(stderr, "cogpu-dist: error: info --split: give --data DIR, FILE.cgds or LIST "
            "(synthetic data holds its validation samples apart: --val-samples)\n");
    return CG_EXIT_USAGE;
  }
  char err[1024];
  const int dir = cg_source_spec_kind(cfg->data) != CG_SPEC_SHARD;
  /* a shard splits by its record names whatever its size and labels; a directory or a list is
   * opened as train opens it (its pairs, pixel limit, label masks, --skip-bad) */
  const cg_source_opts_t so = {.size = dir ? cfg->image_size : 0,
                               .max_pixels = cfg->max_image_pixels, .skip_bad = cfg->skip_bad,
                               .nclass = cfg->num_classes, .ignore = cfg->ignore_index,
                               .shard_labels = !dir, .exif = cg_cfg_exif(cfg)};
  cg_source_t *base = cg_source_open_opts(cfg->data, &so, err, sizeof err);
  cg_source_t *tr = NULL, *va = NULL;
  if (!base || (cfg->val_fraction > 0 &&
                cg_source_split(base, cfg->val_fraction, &tr, &va, err, sizeof err))) {
    fprintf(stderr, "cogpu-dist: error: info --split: %s\n", err);
    cg_source_destroy(base);
    return CG_EXIT_USAGE;
  }
  printf("# --data %s, --val-fraction %g: %lld training, %lld validation sample(s)%s (train "
         "--check-data --skip-bad also leaves out samples that fail to decode, which can move "
         "others across)\n", cfg->data, cfg->val_fraction,
         (long long)(tr ? tr->count : base->count), (long long)(va ? va->count : 0),
         base->dropped ? ", after --skip-bad left some out" : "");
  const cg_source_t *part[2] = {tr ? tr : base, va};
  for (int k = 0; k < 2; k++)
    for (int64_t i = 0; part[k] && i < part[k]->count; i++) {
      const char *name = cg_source_name(part[k], i);
      printf("%s ", k ? "val" : "train");
      put_name(name ? name : "?");
    }
  cg_source_destroy(tr); /* the views borrow base: they go first */
  cg_source_destroy(va);
  cg_source_destroy(base);
  return 0;
}

static int cmd_info(const cg_config_t *cfg, cg_comm_t *c) {
  if (!cfg->info_model && !cfg->info_topology && !cfg->info_split) {
    if (c->rank == 0)
      fprintf(stderr, "cogpu-dist: error: info needs --model, --topology or --split\n");
    return CG_EXIT_USAGE;
  }
  if (cfg->info_split) { /* rank 0 lists; every rank learns whether it failed (--topology is
                            collective and must not wait for a rank that has left) */
    const int rc = c->rank == 0 ? print_split(cfg) : 0;
    if (cg_comm_any(c, rc != 0)) return CG_EXIT_USAGE;
  }
  if (cfg->info_model && c->rank == 0) {
    cg_model_t m;
    char err[256];
    if (cg_model_build(&m, 3 + CG_NFEAT, cfg->model_base, cfg->model_depth, cfg->image_size,
                       cfg->image_size, cfg->num_classes, err, sizeof err)) {
      fprintf(stderr, "cogpu-dist: error: %s\n", err);
      return CG_EXIT_USAGE;
    }
    cg_model_print(&m);
  }
  if (cfg->info_topology) {
    cg_topo_t *t =
        cg_topo_create(c, strcmp(cfg->backend, "cpu") ? CG_TOPO_GPU_AUTO : CG_TOPO_GPU_NONE);
    cg_topo_report(t, c, stdout);
    cg_topo_destroy(t);
  }
  fflush(stdout);
  return 0;
}

int main(int argc, char **argv) {
  cg_blas_pick_core(argv); /* may execute this program again, once, with OpenBLAS's right kernels */
  /* pack, inspect, export, import and colors-to-ids are single-process tools: no MPI. */
  if (argc >= 2 && !strcmp(argv[1], "pack")) return cg_pack_main(argc - 1, argv + 1);
  if (argc >= 2 && !strcmp(argv[1], "inspect")) return cg_ckpt_inspect_main(argc - 1, argv + 1);
  if (argc >= 2 && !strcmp(argv[1], "export")) return cg_export_main(argc - 1, argv + 1);
  if (argc >= 2 && !strcmp(argv[1], "import")) return cg_import_main(argc - 1, argv + 1);
  if (argc >= 2 && !strcmp(argv[1], "colors-to-ids")) return cg_colors_main(argc - 1, argv + 1);
  /* train: a stop signal during MPI_Init is kept for the run (guard.h) */
  if (argc >= 2 && !strcmp(argv[1], "train")) cg_guard_catch_early();
  cg_comm_t c;
  cg_comm_init(&c, &argc, &argv);
  if (argc >= 2 && !strcmp(argv[1], "predict")) { /* its own flags (predict.c) */
    int code = cg_predict_run(argc - 1, argv + 1, &c);
    fflush(stdout);
    cg_comm_finalize(&c);
    return code;
  }
  cg_config_t cfg;
  char err[512];
  int rc = cg_cli_parse(argc, argv, &cfg, err, sizeof err);
  int code = 0;
  /* every rank checks its own command line, and some checks read files (--label-map, a shard's
   * map) that one node may lack: all ranks learn of a failure on any, which rank 0 names */
  if (cg_comm_report_errors(&c, rc < 0 ? err : NULL)) {
    rc = -1;
    code = CG_EXIT_USAGE;
  } else if (rc == 0) {
    if (cfg.cmd == CG_CMD_TRAIN) {
      code = cg_settings_resume(&cfg, &c); /* --resume: the checkpoint's settings */
      if (!code) code = cg_init_from_settings(&cfg, &c); /* --init-from: its model */
      if (!code) code = cg_train_run(&cfg, &c, NULL);
    }
    else if (cfg.cmd == CG_CMD_INFO) code = cmd_info(&cfg, &c);
  }
  /* failed (rank 0 said why): mpirun's teardown signal is no stop request (guard.h) */
  if (code != 0) cg_guard_failed(NULL);
  if (rc == 1 && c.rank == 0) {
    if (cfg.show == CG_SHOW_VERSION) printf("cogpu-dist %s\n", COGPU_VERSION);
    else cg_cli_print_help(stdout, cfg.cmd);
  }
  fflush(stdout);
  fflush(stderr);
  cg_comm_finalize(&c);
  return code;
}
