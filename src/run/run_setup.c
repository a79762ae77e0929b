/* run_setup.c: everything a training run needs before its first step, made stage by stage and
 * undone along one path (run.h).
 *
 * The stages, in order (each a function below):
 *   settings   every rank's training settings equal rank 0's (else no collective below could
 *              be trusted to match)
 *   outputs    rank 0 checks every output path and the checkpoint directory; agreed
 *   placement  --backend/--precision (cg_backend_choose), the model, this rank's cores, the
 *              pre-flight memory estimate
 *   data       the sources, opened and checked by every rank (agreed); steps per epoch and run
 *   resume     rank 0 reads the checkpoint, every rank receives it; the position in the data
 *              (without one, --init-from's weights the same way)
 *   devices    bucket plan, MPI gradient sync, trace, NCCL, the backend with its parameters
 * then, every check passed, the step loop's state (these cannot fail on the user's input):
 *   set-aside  --overwrite-checkpoints: rank 0 moves the earlier run's files aside
 *   steps      step health, step table, resume counters and run id, the CPU/GPU split
 *   ckpt       rank 0's host buffers for writing checkpoints
 *   reporting  load figures (stats) with the --report-ranks view, progress mode
 *   helpers    the loader helpers' cores
 * Start-up problems with the user's input are agreed by all ranks and reported once, by rank 0,
 * with exit code 2 (a backend that fails to start: 1). A stage only adds to the run and every
 * destroy takes NULL, so the one `goto fail` in cg_run_setup, which calls cg_run_teardown,
 * undoes exactly what was made. */
#include "run.h"

#include <errno.h>
#include <limits.h> /* INT_MAX */
#include <math.h>   /* NAN, isnan: --early-stop-patience's state */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"    /* cg_afile_check: the output paths */
#include "backend_choose.h" /* cg_backend_choose: --backend and --precision */
#include "cli.h"       /* cg_cli_opts, cg_opts_given: which flags the command line gave */
#include "ckpt.h"      /* cg_ckpt_*: checkpoint directory checks, reading, the resume position */
#include "feat.h"
#include "image_io.h" /* cg_image_orientation_text: the EXIF orientation warning */
#include "sampler.h"
#include "datacheck.h" /* cg_datacheck_run: --skip-bad / --check-data before the first step */
#include "gsync.h"     /* cg_gsync_*: the MPI gradient all-reduce */
#include "init_from.h" /* cg_init_from_load: --init-from's weights */
#include "log.h"       /* CG_CHECK_MPI, cg_malloc, messages */
#include "nccl_comm.h" /* cg_nccl_*: the NCCL gradient all-reduce and how auto chooses it */
#include "preflight.h" /* cg_preflight_*: will the model and its batches fit */
#include "json.h"      /* cg_json_parse: which setting differs between two ranks */
#include "path.h"      /* cg_path_same_file: an output is not the --data list; DIR/last */
#include "rng.h"       /* cg_fnv1a: the ranks' settings and sample names compared by hash */
#include "run_settings.h" /* cg_settings_json: the settings every rank must share */

/* Rank 0 says what went wrong (err is the same on every rank, or only rank 0's counts). */
static int usage(const cg_run_t *r, const char *err) {
  if (r->c->rank == 0) fprintf(stderr, "cogpu-dist: error: %s\n", err);
  return CG_EXIT_USAGE;
}

/* ---- the same run on every rank ----------------------------------------------------------- */

/* Every rank hashes what it holds; 0 when all agree, else the lowest rank whose hash differs
 * from rank 0's (every rank gets it) and, on rank 0, how many differ. Collective. */
static int first_other(const cg_comm_t *c, uint64_t h, int *ndiff) {
  uint64_t lo = h, hi = h;
  CG_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, c->world));
  CG_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, c->world));
  *ndiff = 0;
  if (lo == hi) return 0;
  uint64_t *all = c->rank == 0 ? cg_malloc(sizeof *all * (size_t)c->size, "hashes") : NULL;
  CG_CHECK_MPI(MPI_Gather(&h, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, 0, c->world));
  int first = 0;
  for (int k = 1; c->rank == 0 && k < c->size; k++)
    if (all[k] != all[0]) {
      if (!first) first = k;
      ++*ndiff;
    }
  free(all);
  CG_CHECK_MPI(MPI_Bcast(&first, 1, MPI_INT, 0, c->world));
  return first;
}

/* The first setting whose value differs between a (rank 0's) and b (another rank's), looked
 * for both ways (a key one side lacks counts): its name, with "--KEY B's (rank 0: A's)" in
 * what; NULL when none is found. */
static const char *differing_key(const cg_json_t *a, const cg_json_t *b, char *what,
                                 size_t len) {
  if (!a || !b || a->type != CG_JSON_OBJ || b->type != CG_JSON_OBJ) return NULL;
  for (int side = 0; side < 2; side++) {
    const cg_json_t *x = side ? b : a, *y = side ? a : b;
    for (int i = 0; i < x->n; i++) {
      const char *vx = x->items[i].type == CG_JSON_STR ? x->items[i].str : "";
      const char *vy = cg_json_str(y, x->keys[i], "(none)");
      if (strcmp(vx, vy)) {
        snprintf(what, len, "--%.40s %.200s (rank 0: %.200s)", x->keys[i], side ? vx : vy,
                 side ? vy : vx);
        return x->keys[i];
      }
    }
  }
  return NULL;
}

/* The settings a checkpoint stores fit its trailer, with room for the data's names and sides
 * (cg_settings_add): else a resume would find them cut. */
static int check_settings_fit(cg_run_t *r, char *err, size_t errlen) {
  char *all = cg_malloc(CG_CKPT_SETTINGS_MAX, "settings");
  const int fits = cg_settings_json(r->cfg, all, CG_CKPT_SETTINGS_MAX - 160) == 0;
  free(all);
  if (!fits)
    snprintf(err, errlen, "the run's settings take more than the %d bytes a checkpoint stores "
             "(long paths, a long --class-weights or --class-names, a large --label-map): shorten "
             "the paths",
             CG_CKPT_SETTINGS_MAX - 160);
  return fits ? 0 : -1;
}

/* Ranks started with different training settings would train different things, or meet in
 * different collectives and wait for ever (a --data of synthetic on one rank and of files on
 * another): before anything else, every rank's settings (cg_settings_json, with --data and
 * --val-data as their kind: each rank may read its own copy of the files, which open_data
 * compares) must equal rank 0's. Rank 0 names the first rank that differs and the setting. */
static int check_same_settings(cg_run_t *r, char *err, size_t errlen) {
  const cg_comm_t *c = r->c;
  if (c->size == 1) return 0;
  cg_config_t *kind = cg_malloc(sizeof *kind, "settings");
  *kind = *r->cfg;
  snprintf(kind->data, sizeof kind->data, "%s",
           !strcmp(r->cfg->data, "synthetic") ? "synthetic" : "files");
  snprintf(kind->val_data, sizeof kind->val_data, "%s", r->cfg->val_data[0] ? "files" : "");
  char *mine = cg_calloc(1, CG_CKPT_SETTINGS_MAX, "settings"); /* sent whole: no stale bytes */
  cg_settings_json(kind, mine, CG_CKPT_SETTINGS_MAX);
  free(kind);
  /* and what is not stored but decides which collectives a rank makes (--lr-find: a loss
   * all-reduce and a verdict every step; its range, the rates every rank must step with;
   * --trace-out: each rank's check of its file, agreed at start-up) */
  const cg_config_t *cfg = r->cfg;
  const size_t n = strlen(mine);
  if (n > 0 && mine[n - 1] == '}')
    snprintf(mine + n - 1, CG_CKPT_SETTINGS_MAX - (n - 1),
             ", \"report-every\": \"%lld\", \"check-data\": \"%s\", \"allreduce\": \"%s\", "
             "\"split\": \"%s\", \"split-every\": \"%d\", \"lr-find\": \"%lld\", "
             "\"lr-find-range\": \"%s\", \"trace-out\": \"%s\"}",
             (long long)cfg->report_every, cfg->check_data ? "on" : "off", cfg->allreduce,
             cfg->split, cfg->split_every, (long long)cfg->lr_find,
             cfg->lr_find ? cfg->lr_find_range : "", cfg->trace_out[0] ? "on" : "off");
  int ndiff;
  const int other = first_other(c, cg_fnv1a(CG_FNV1A_INIT, mine, strlen(mine)), &ndiff);
  if (!other) {
    free(mine);
    return 0;
  }
  char *theirs = c->rank == 0 ? cg_malloc(CG_CKPT_SETTINGS_MAX, "settings") : NULL;
  if (c->rank == other)
    CG_CHECK_MPI(MPI_Send(mine, CG_CKPT_SETTINGS_MAX, MPI_CHAR, 0, 0, c->world));
  if (c->rank == 0) {
    CG_CHECK_MPI(MPI_Recv(theirs, CG_CKPT_SETTINGS_MAX, MPI_CHAR, other, 0, c->world,
                          MPI_STATUS_IGNORE));
    theirs[CG_CKPT_SETTINGS_MAX - 1] = 0;
    char what[512] = "", je[64];
    cg_json_t *a = cg_json_parse(mine, je, sizeof je), *b = cg_json_parse(theirs, je, sizeof je);
    const char *key = differing_key(a, b, what, sizeof what);
    const int map = key && !strcmp(key, "label-map-table"); /* before the trees are freed */
    const int names = key && !strcmp(key, "class-names");
    cg_json_free(a);
    cg_json_free(b);
    if (map) /* the same flags, other files on that node */
      snprintf(err, errlen, "rank %d's label map maps otherwise than rank 0's%s: a --label-map "
               "file that differs between nodes, or a shard --data packed with a map that one "
               "rank cannot read (is the shard there?)", other,
               ndiff > 1 ? " (and more ranks differ)" : "");
    else
      snprintf(err, errlen, "the ranks were started with different settings: rank %d has %s%s; "
               "every rank must run the same command line%s", other, what[0] ? what : "others",
               ndiff > 1 ? ", and more ranks differ" : "",
               names ? " (the same --class-names FILE is read on each rank: is it the same file "
                       "on every node?)"
                     : "");
  }
  free(theirs);
  free(mine);
  return usage(r, err);
}

/* ---- outputs --------------------------------------------------------------------------------- */

/* -1 when flag's path is a file the run reads as data (--data or --val-data: a list of pairs
 * is text, which cg_afile_check lets through). */
static int check_not_input(const cg_config_t *cfg, const char *flag, const char *path, char *err,
                           size_t errlen) {
  /* text inputs have no magic for cg_afile_check to know them by: compared by file */
  const char *in = cg_path_same_file(path, cfg->data)              ? "--data"
                   : cg_path_same_file(path, cfg->val_data)        ? "--val-data"
                   : strcmp(cfg->label_map, "reduce-zero") &&
                           cg_path_same_file(path, cfg->label_map) ? "--label-map file"
                   : cg_path_same_file(path, cfg->class_names_file) ? "--class-names file"
                                                                   : NULL;
  if (in) snprintf(err, errlen, "%s: '%s' is the %s being read", flag, path, in);
  return in ? -1 : 0;
}

/* 0 if flag's path (none: "") can be written as `how` says (cg_afile_check) and is no input. */
static int check_output_path(const cg_config_t *cfg, const char *flag, const char *path,
                             cg_afile_how_t how, char *err, size_t errlen) {
  if (!path[0]) return 0;
  if (cg_afile_check(flag, path, how, err, errlen)) return -1;
  return check_not_input(cfg, flag, path, err, errlen);
}

/* A run that does not resume must not start in a directory holding another run's checkpoints:
 * its checkpoints would mix with (and, with the same step numbers, replace) the earlier run's.
 * 0, or -1 naming the directory, its newest checkpoint and the ways out. */
static int check_no_checkpoints(const char *dir, char *err, size_t errlen) {
  char **paths;
  int64_t *steps;
  int n;
  if (cg_ckpt_list(dir, &paths, &steps, &n, err, errlen) != 0) return -1;
  if (n > 0)
    snprintf(err, errlen, "--checkpoint-dir %s already holds %d checkpoint(s), the newest %s "
             "(step %lld): continue that run with --resume, or choose another --checkpoint-dir, "
             "or start afresh there with --overwrite-checkpoints (the earlier run's checkpoints, "
             "best, last and history.jsonl are then moved into %s/previous-<time>/, nothing is "
             "deleted)", dir, n, paths[0], (long long)steps[0], dir);
  cg_ckpt_list_free(paths, steps, n);
  return n > 0 ? -1 : 0;
}

/* Rank 0 checks; every rank gets its verdict. */
static int check_outputs(cg_run_t *r, char *err, size_t errlen) {
  const cg_config_t *cfg = r->cfg;
  int rc = 0;
  if (r->c->rank == 0 && cfg->test_slow_rank >= r->c->size) { /* the one flag naming a rank */
    snprintf(err, errlen, "--test-slow-rank: rank %d does not exist (the job has %d rank%s)",
             cfg->test_slow_rank, r->c->size, r->c->size > 1 ? "s" : "");
    rc = -1;
  }
  if (r->c->rank == 0 && !rc) {
    const struct {
      const char *flag, *path;
      cg_afile_how_t how;
    } outs[] = {{"--metrics-out", cfg->metrics_out, CG_AFILE_REPLACE},
                {"--params-out", cfg->params_out, CG_AFILE_REPLACE},
                {"--stats-out", cfg->stats_out, CG_AFILE_APPEND},
                {"--prom-out", cfg->prom_out, CG_AFILE_REPLACE},
                {"--history-out", cfg->history_out, CG_AFILE_REPLACE_HISTORY}, /* on resume */
                {"--history-csv", cfg->history_csv, CG_AFILE_REPLACE},
                {"--lr-find-out", cfg->lr_find_out, CG_AFILE_REPLACE}};
    for (size_t i = 0; i < sizeof outs / sizeof outs[0] && !rc; i++)
      rc = check_output_path(cfg, outs[i].flag, outs[i].path, outs[i].how, err, errlen);
    if (!rc) /* read, and rewritten by the CUDA backend */
      rc = check_not_input(cfg, "--algo-cache", cfg->algo_cache, err, errlen);
    if (!rc && cfg->checkpoint_dir[0])
      rc = cg_ckpt_prepare_dir(cfg->checkpoint_dir, "--checkpoint-dir", err, errlen);
    if (!rc && cfg->checkpoint_dir[0]) {
      r->ck_lock = cg_ckpt_lock_dir(cfg->checkpoint_dir, "--checkpoint-dir", err, errlen);
      if (r->ck_lock == -1) rc = -1;
      if (r->ck_lock == -2) cg_log_warn("%s: going on without it", err);
    }
    if (!rc && cfg->checkpoint_dir[0] && !cfg->resume[0] && !cfg->overwrite_checkpoints)
      rc = check_no_checkpoints(cfg->checkpoint_dir, err, errlen);
    if (!rc && cfg->checkpoint_dir[0] && !cfg->history_out[0]) { /* the default history */
      char hist[CG_PATH_MAX + 32];
      snprintf(hist, sizeof hist, "%s/history.jsonl", cfg->checkpoint_dir);
      rc = check_output_path(cfg, "--history-out (default: DIR/history.jsonl)", hist,
                             CG_AFILE_REPLACE_HISTORY, err, errlen);
    }
  }
  CG_CHECK_MPI(MPI_Bcast(&rc, 1, MPI_INT, 0, r->c->world));
  if (rc) {
    CG_CHECK_MPI(MPI_Bcast(err, (int)errlen, MPI_CHAR, 0, r->c->world));
    return usage(r, err);
  }
  if (!cfg->trace_out[0]) return 0;
  /* every rank writes its own timeline, maybe on its own node: each checks its file */
  char probe[CG_PATH_MAX + 32];
  snprintf(probe, sizeof probe, "%s.rank%d.json", cfg->trace_out, r->c->rank);
  const int bad = check_output_path(cfg, "--trace-out", probe, CG_AFILE_REPLACE, err, errlen) != 0;
  return cg_comm_report_errors(r->c, bad ? err : NULL) ? CG_EXIT_USAGE : 0;
}

/* ---- placement ------------------------------------------------------------------------------- */

static int place_rank(cg_run_t *r, char *err, size_t errlen) {
  const cg_config_t *cfg = r->cfg;
  cg_comm_t *c = r->c;
  cg_backend_choice_t bk;
  if (cg_backend_choose(cfg->backend, cfg->precision, c, c->rank == 0 ? stdout : NULL, &bk, err,
                        errlen))
    return usage(r, err);
  r->ops = bk.ops;
  r->is_cuda = bk.is_cuda;
  r->prec = bk.precision;
  cg_model_t *m = &r->model;
  if (cg_model_build(m, 3 + CG_NFEAT, cfg->model_base, cfg->model_depth, cfg->image_size,
                     cfg->image_size, cfg->num_classes, err, errlen))
    return usage(r, err);
  r->shape = (cg_ckpt_shape_t){m->in_c, m->base, m->depth, m->height, m->width,
                               (uint64_t)m->nparams, m->nclass};
  if (cfg->class_names[0]) { /* cg_cli_check made them a list, checked for these classes */
    r->names_own = cg_malloc(sizeof *r->names_own, "class names");
    if (cg_classnames_from_list(cfg->class_names, m->nclass, r->names_own, err, errlen))
      return usage(r, err);
    r->class_names = r->names_own->name;
  }
  r->topo = cg_topo_create(c, r->is_cuda ? CG_TOPO_GPU_AUTO : CG_TOPO_GPU_NONE);
  r->place = cg_topo_plan(r->topo);
  /* Threads started from here on (OpenMP, CUDA, NCCL) inherit the rank's cores. Cores shared
   * with other ranks stay unpinned: the OS balances oversubscribed ranks better. */
  if (!r->place->shared) cg_topo_pin_thread(r->topo, -1);
  r->threads = cfg->threads > 0 ? cfg->threads : r->place->ncpus;
  r->workers = cfg->cpu_workers >= 0 ? cfg->cpu_workers
                                     : cg_topo_helpers_default(r->place, r->is_cuda);
  /* pre-flight: will the model and its batches fit? (before anything large is allocated) */
  const cg_preflight_t est =
      cg_preflight_estimate(m, cfg->batch, cfg->grad_accum, cfg->prefetch, r->is_cuda,
                            r->prec == CG_PREC_FP32 ? 4 : 2,
                            (cg_cfg_sgd(cfg) ? 1 : 2) + (cfg->ema_decay > 0),
                            cfg->ohem_thresh > 0);
  r->device = r->place->gpu >= 0 ? r->place->gpu : c->local_rank;
  const int bad = cg_preflight_check(&est, r->is_cuda, r->device, c->local_size, err, errlen);
  return cg_comm_report_errors(c, bad ? err : NULL) ? CG_EXIT_USAGE : 0;
}

/* ---- data ------------------------------------------------------------------------------------ */

/* --class-weights balanced: the weights of the class pixels hist (every rank's, summed) into
 * the run's settings, each rounded to the 4 digits --check-data prints them with (so that its
 * printed flag trains the same run); binary: --pos-weight. */
static int take_balanced(cg_run_t *r, const int64_t *hist, char *err, size_t errlen) {
  cg_config_t *cfg = r->cfg_own;
  const int K = cfg->num_classes;
  float w[255];
  if (!cg_datacheck_balanced(hist, K, w)) {
    snprintf(err, errlen, "--class-weights balanced: %s has no class pixel to count (every "
             "pixel is the ignore label)", cfg->data);
    return -1;
  }
  char t0[32] = "";
  for (int k = 0; k < (K > 1 ? K : 1); k++) {
    char t[32];
    snprintf(t, sizeof t, "%.4g", (double)w[k]);
    w[k] = strtof(t, NULL);
    if (!k) memcpy(t0, t, sizeof t);
  }
  if (K == 1) cfg->pos_weight = atof(t0); /* the 4 digits, as --pos-weight reads them */
  cfg->class_weights_counted = 1;
  return cg_cli_set_class_weights(cfg, w, K > 1 ? K : 0, err, errlen) ||
                 check_settings_fit(r, err, errlen)
             ? -1
             : 0;
}

/* Prefixes err (a source's message, which names its path) with the flag that gave the source;
 * returns -1. */
static int name_flag(const char *flag, char *err, size_t errlen) {
  char *why = strdup(err);
  if (why) snprintf(err, errlen, "%s: %s", flag, why);
  free(why);
  return -1;
}

/* Rank 0's word on the images of flag's source that a viewer turns (EXIF orientation): read so
 * (--exif-orientation apply), or a warning that they are not. */
static void warn_exif(const char *flag, const cg_source_t *s, cg_exif_t exif) {
  if (!s || !s->exif_turned) return;
  if (exif == CG_EXIF_APPLY) {
    printf("%s: %lld JPEG image(s) read turned as their EXIF orientation says "
           "(--exif-orientation apply; the first, %s: %d, %s)\n", flag,
           (long long)s->exif_turned, s->exif_first, s->exif_orient,
           cg_image_orientation_text(s->exif_orient));
    return;
  }
  cg_log_warn("%s: %lld JPEG image(s) carry an EXIF orientation that turns or mirrors them in a "
              "viewer (the first, %s: %d, shown %s); they are read as stored, as PIL's "
              "Image.open and torchvision read them, so masks drawn over what a viewer showed "
              "(CVAT, LabelMe) do not line up with them: --exif-orientation apply reads them as "
              "a viewer shows them (or store them upright: exiftran -ai FILE...); check which "
              "their masks fit", flag, (long long)s->exif_turned, s->exif_first, s->exif_orient,
              cg_image_orientation_text(s->exif_orient));
}

/* Every rank opens the files itself (they are checked at open) and they agree on the verdict.
 * With --check-data a pair failing at open is left out and kept for the check's list (even
 * without --skip-bad), so every bad file is listed and counted, not the first alone. */
static int open_files(cg_run_t *r, char *err, size_t errlen) {
  const cg_config_t *cfg = r->cfg;
  cg_labelmap_t lm;
  int rc = 0; /* the map cg_cli_check read (or the resumed checkpoint kept) */
  if (cfg->label_map_table[0] &&
      cg_labelmap_from_table(cfg->label_map_table,
                             cfg->label_map[0] ? cfg->label_map : "(pack's, from the shard)",
                             &lm) != 0) {
    snprintf(err, errlen, "--label-map %s: a malformed table",
             cfg->label_map[0] ? cfg->label_map : "(the shard's)");
    rc = -1;
  }
  /* --class-weights balanced decodes every sample as --check-data does, and checks them */
  int64_t hist[256] = {0};
  const int check = cfg->check_data || cg_cfg_class_weights_balanced(cfg);
  const cg_source_opts_t so = {.size = cfg->image_size, .max_pixels = cfg->max_image_pixels,
                               .skip_bad = cfg->skip_bad || check,
                               .all_why = check, .bad_hint = CG_BAD_SAMPLE_HINT,
                               .seed = cfg->seed, .nclass = cfg->num_classes,
                               .ignore = cfg->ignore_index,
                               .label_map = cfg->label_map_table[0] ? &lm : NULL,
                               .exif = cg_cfg_exif(cfg)};
  if (!rc) r->base_src = cg_source_open_opts(cfg->data, &so, err, errlen);
  if (!rc && !r->base_src) rc = name_flag("--data", err, errlen);
  if (!rc && cfg->val_data[0]) {
    r->val_base = cg_source_open_opts(cfg->val_data, &so, err, errlen);
    rc = r->val_base ? 0 : name_flag("--val-data", err, errlen);
  }
  /* samples left out at open; --check-data (collective: only when every rank opened), also
   * the count of --class-weights balanced */
  if (!cg_comm_any(r->c, rc != 0))
    rc = cg_datacheck_run(&r->base_src, &r->val_base, r->c, r->place->ncpus, check,
                          cfg->skip_bad, cfg->num_classes, cfg->ignore_index, cfg->crop,
                          r->class_names, hist,
                          cfg->check_data ? "--check-data" : "--class-weights balanced", err,
                          errlen);
  if (!rc && r->c->rank == 0) {
    warn_exif("--data", r->base_src, cg_cfg_exif(cfg));
    warn_exif("--val-data", r->val_base, cg_cfg_exif(cfg));
  }
  if (!rc && r->cfg_own) rc = take_balanced(r, hist, err, errlen);
  if (!rc && cfg->val_data[0]) {
    r->train_src = r->base_src;
    r->val_src = r->val_base;
    const char *one;
    int64_t shared;
    if (!strcmp(cfg->val_data, cfg->data) && r->c->rank == 0) /* both absolute (cli.c) */
      cg_log_warn("--val-data is --data (%s): the run validates on its training samples, which "
                  "says nothing of unseen ones (--val-fraction F holds some out)", cfg->data);
    else if (r->c->rank == 0 && (shared = cg_source_shared_names(r->train_src, r->val_src, &one)))
      cg_log_warn("%lld of the %lld --val-data samples have the name of a training sample (%s "
                  "the first): if they are the same images, validation is not on unseen data",
                  (long long)shared, (long long)r->val_src->count, one);
  } else if (!rc && cfg->val_fraction > 0) {
    rc = cg_source_split(r->base_src, cfg->val_fraction, &r->train_src, &r->val_src, err, errlen);
  } else if (!rc) {
    r->train_src = r->base_src;
  }
  if (cg_comm_report_errors(r->c, rc ? err : NULL)) { /* once per distinct message */
    CG_CHECK_MPI(MPI_Barrier(r->c->world));
    return CG_EXIT_USAGE;
  }
  return 0;
}

/* h extended by src's sample names, in order (none: h). */
static uint64_t hash_names(uint64_t h, const cg_source_t *src) {
  for (int64_t i = 0; src && i < src->count; i++) {
    const char *name = cg_source_name(src, i);
    if (name) h = cg_fnv1a(h, name, strlen(name) + 1);
  }
  return h;
}

/* The shorter sides of the images of --data (the train and val parts of it) into r->data_sides
 * as "MIN:MAX": the scale at which training saw them, N / side (README: predict --resize auto).
 * Synthetic samples are N x N; a shard keeps no original sizes: "". */
static void data_sides(cg_run_t *r) {
  int lo = INT_MAX, hi = 0, h, w;
  const char *path;
  if (r->synthetic) lo = hi = r->cfg->image_size;
  for (int64_t i = 0; !r->synthetic && i < r->base_src->count; i++) {
    if (cg_source_png_image(r->base_src, i, &path, &h, &w)) return; /* not image files */
    const int s = h < w ? h : w;
    lo = s < lo ? s : lo;
    hi = s > hi ? s : hi;
  }
  if (hi > 0) snprintf(r->data_sides, sizeof r->data_sides, "%d:%d", lo, hi);
}

/* Every rank must read the same samples (a node-local copy of the data may differ): the
 * counts and the names of the training and validation sets, in order, equal rank 0's (train_h:
 * hash_names of the training set). */
static int check_same_data(cg_run_t *r, uint64_t train_h, char *err, size_t errlen) {
  const cg_comm_t *c = r->c;
  if (c->size == 1) return 0;
  int64_t n[2] = {r->ntrain, r->nval};
  uint64_t h = cg_fnv1a(CG_FNV1A_INIT, n, sizeof n);
  h = hash_names(cg_fnv1a(h, &train_h, sizeof train_h), r->val_src);
  int ndiff;
  const int other = first_other(c, h, &ndiff);
  if (!other) return 0;
  int64_t theirs[2] = {0, 0};
  if (c->rank == other) CG_CHECK_MPI(MPI_Send(n, 2, MPI_INT64_T, 0, 1, c->world));
  if (c->rank == 0) {
    CG_CHECK_MPI(MPI_Recv(theirs, 2, MPI_INT64_T, other, 1, c->world, MPI_STATUS_IGNORE));
    snprintf(err, errlen, "rank %d reads other data than rank 0: %lld training / %lld "
             "validation samples (rank 0: %lld / %lld)%s%s; every rank must see the same files",
             other, (long long)theirs[0], (long long)theirs[1], (long long)n[0], (long long)n[1],
             theirs[0] == n[0] && theirs[1] == n[1] ? ", under other names" : "",
             ndiff > 1 ? ", and more ranks differ" : "");
  }
  return usage(r, err);
}

/* A binary data set saved as 0/255 masks, trained with --num-classes >= 2: 255 is the default
 * --ignore-index, so every foreground pixel would be left out of the loss and the metrics. Rank
 * 0 looks at the first training masks as training sees them (whole: crops reach past the
 * centred square, and the classes may lie at a wide photo's sides; with --crop off the fitted
 * squares), stops at the first pixel of a class other than 0, and warns when they hold only 0
 * and 255. */
static void warn_masks_0_255(const cg_run_t *r) {
  const cg_config_t *cfg = r->cfg;
  if (r->synthetic || r->c->rank != 0 || cfg->num_classes < 2 || cfg->ignore_index != 255)
    return;
  cg_source_t *s = r->train_src;
  const int64_t n = s->count < 8 ? s->count : 8;
  int64_t looked = 0, ignored = 0, other = 0;
  char why[512];
  for (int64_t i = 0; i < n && !other; i++) {
    int h = s->h, w = s->w;
    if (cfg->crop && cg_source_load_whole(s, i, &h, &w, NULL, NULL, why, sizeof why))
      continue; /* met again later */
    const size_t px = (size_t)h * (size_t)w;
    uint8_t *rgb = cg_malloc(3 * px, "mask check"), *mask = cg_malloc(px, "mask check");
    if (cfg->crop ? !cg_source_load_whole(s, i, &h, &w, rgb, mask, why, sizeof why)
                  : !cg_source_load(s, i, rgb, mask, why, sizeof why)) {
      looked++;
      for (size_t p = 0; p < px; p++) {
        ignored += mask[p] == 255;
        other += mask[p] != 255 && mask[p] != 0;
      }
    }
    free(rgb);
    free(mask);
  }
  const cg_opts_set_t set = cg_cli_opts(CG_CMD_TRAIN, (cg_config_t *)cfg);
  const int given = cg_opts_given(&set, cfg->argc, cfg->argv, "ignore-index");
  if (looked && ignored && !other && cfg->label_map_table[0]) /* the ids after the map */
    cg_log_warn("after --label-map %s, the first %lld training mask(s) of %s hold only 0 and "
                "255, the ignore label: no pixel would train a class other than 0 (does the map "
                "give each class's stored value?)",
                cfg->label_map[0] ? cfg->label_map : "(the shard's)", (long long)looked,
                cfg->data);
  else if (looked && ignored && !other)
    cg_log_warn("the first %lld training mask(s) of %s hold only 0 and 255, and 255 is the "
                "ignore label (--ignore-index 255%s): no pixel would train a class other than "
                "0. Binary masks saved as 0/255 train with --num-classes 1 (a pixel > 0 is "
                "foreground)", (long long)looked, cfg->data,
                given ? "" : ", the default with --num-classes >= 2");
}

static int open_data(cg_run_t *r, char *err, size_t errlen) {
  const cg_config_t *cfg = r->cfg;
  r->synthetic = !strcmp(cfg->data, "synthetic");
  if (r->synthetic) {
    r->train_src = cg_source_synthetic_k(cfg->seed, 0, cfg->train_samples, cfg->image_size,
                                         cfg->image_size, cfg->num_classes, cfg->ignore_index);
    if (cfg->val_samples)
      r->val_src = cg_source_synthetic_k(cfg->seed, cfg->train_samples, cfg->val_samples,
                                         cfg->image_size, cfg->image_size, cfg->num_classes,
                                         cfg->ignore_index);
    if (r->cfg_own) { /* --class-weights balanced: the training samples' class pixels */
      int64_t hist[256] = {0};
      cg_source_check(r->train_src, r->c->rank, r->c->size, r->place->ncpus, NULL, NULL, NULL,
                      hist, 0);
      CG_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, hist, 256, MPI_INT64_T, MPI_SUM, r->c->world));
      if (cg_comm_report_errors(r->c, take_balanced(r, hist, err, errlen) ? err : NULL))
        return CG_EXIT_USAGE;
    }
  } else {
    const int code = open_files(r, err, errlen);
    if (code) return code;
  }
  r->ntrain = r->train_src->count;
  r->nval = r->val_src ? r->val_src->count : 0;
  /* the training set's names, once: for the ranks' agreement and for checkpoints (not kept
   * for synthetic samples, a function of the seed, which is stored) */
  const uint64_t train_h =
      !r->synthetic || r->c->size > 1 ? hash_names(CG_FNV1A_INIT, r->train_src) : 0;
  if (!r->synthetic)
    snprintf(r->data_names, sizeof r->data_names, "%lld:%016llx", (long long)r->ntrain,
             (unsigned long long)train_h);
  const int code = check_same_data(r, train_h, err, errlen);
  if (code) return code;
  int mh, mw, oh, ow; /* --val-mode full needs each validation image's mask at its own size */
  if (!strcmp(cfg->val_mode, "full") && r->nval > 0 &&
      cg_source_load_full(r->val_src, 0, &oh, &ow, &mh, &mw, NULL, NULL, err, errlen) == -2) {
    snprintf(err, errlen, "--val-mode full: the validation data (%s) is a .cgds shard, whose "
             "records are stored scaled: it keeps no full-size masks to score; use --val-mode "
             "whole (scored at the training scale), or validate on the image files (--val-data "
             "DIR or LIST)", cfg->val_data[0] ? cfg->val_data : cfg->data);
    return usage(r, err);
  }
  data_sides(r);
  warn_masks_0_255(r);
  cg_sampler_t s;
  cg_sampler_init(&s, r->ntrain, r->c->size, r->c->rank, cfg->batch, cfg->seed);
  cg_sampler_set_accum(&s, cfg->grad_accum);
  r->spe = cg_sampler_steps_per_epoch(&s);
  cg_sampler_free(&s);
  r->total = r->sched_total = cfg->steps > 0 ? cfg->steps : cfg->epochs * r->spe;
  if (cfg->early_stop_patience > 0 && !r->val_src) {
    snprintf(err, errlen, "--early-stop-patience: the run has no validation data to watch (%s)",
             r->synthetic ? "--val-samples 0" : "--val-fraction 0 and no --val-data");
    return usage(r, err);
  }
  r->global = (int64_t)r->c->size * cfg->batch * cfg->grad_accum;
  const cg_opts_set_t set = cg_cli_opts(CG_CMD_TRAIN, (void *)cfg);
  if (cfg->steps > 0 && r->c->rank == 0 && cg_opts_given(&set, cfg->argc, cfg->argv, "epochs"))
    cg_log_warn("--epochs %lld is not used: --steps %lld sets the run's length (--steps 0 trains "
                "--epochs epochs)", (long long)cfg->epochs, (long long)cfg->steps);
  if (cfg->warmup_steps > r->total && r->c->rank == 0)
    cg_log_warn("--warmup-steps %lld is longer than the run's %lld steps: the learning rate "
                "never reaches --lr", (long long)cfg->warmup_steps, (long long)r->total);
  const int ms = !strcmp(cfg->lr_schedule, "multistep") ? cfg->nmilestones : 0;
  if (ms && cfg->milestone[ms - 1] >= r->total && r->c->rank == 0)
    cg_log_warn("--lr-milestones: %lld is not before the run's end (%lld steps): it never "
                "applies (the milestones are steps, not epochs: %lld steps an epoch)",
                (long long)cfg->milestone[ms - 1], (long long)r->total, (long long)r->spe);
  return 0;
}

/* ---- resume ---------------------------------------------------------------------------------- */

static void warn_older(const cg_run_t *r);

/* Rank 0 finds and verifies the checkpoint of --resume. Returns 0 (r->ck, params, moments and
 * ck_path filled), 1 when the directory holds no checkpoint (a fresh start), or -1 with err. */
static int read_checkpoint(cg_run_t *r, char *err, size_t errlen) {
  const cg_config_t *cfg = r->cfg;
  const int latest = !strcmp(cfg->resume, CG_RESUME_LATEST);
  const char *src = latest ? cfg->checkpoint_dir : cfg->resume;
  struct stat st;
  if (latest || (stat(src, &st) == 0 && S_ISDIR(st.st_mode))) {
    int rc = cg_ckpt_find(src, &r->shape, &r->ck, r->params, r->adam_m, r->adam_v, r->ema_ck,
                          r->ck_path, sizeof r->ck_path, cg_log_warn_line, NULL, err,
                          errlen);
    if (rc < 0) {
      size_t k = strlen(err);
      snprintf(err + k, errlen - k, " (--resume: see the messages above; `cogpu-dist inspect "
               "%s` lists them)", src);
    }
    return rc;
  }
  char target[CG_PATH_MAX + 64]; /* --resume DIR/last or DIR/best: the file it names */
  if (cg_ckpt_pointer_target(src, target, sizeof target)) src = target;
  cg_ckpt_status_t s = cg_ckpt_read(src, &r->shape, &r->ck, r->params, r->adam_m, r->adam_v,
                                    r->ema_ck, err, errlen);
  if (s != CG_CKPT_OK) {
    char why[1024];
    snprintf(why, sizeof why, "%s", err);
    snprintf(err, errlen, "--resume: %s", why);
    return -1;
  }
  snprintf(r->ck_path, sizeof r->ck_path, "%s", src);
  warn_older(r);
  return 0;
}

/* --resume FILE (DIR/best often) older than its run's newest checkpoint, which DIR/last names:
 * the run goes on from FILE's step, and its next checkpoint write removes the run's later ones
 * (an abandoned attempt's, ckpt.h). Said before anything is lost. */
static void warn_older(const cg_run_t *r) {
  char last[CG_PATH_MAX + 128];
  int64_t lstep = -1;
  cg_ckpt_info_t *h = cg_malloc(sizeof *h, "checkpoint header");
  if (cg_ckpt_last_of(r->ck_path, last, sizeof last, &lstep) == 0 && lstep > r->ck.step &&
      cg_ckpt_header(last, h) == 0 && h->run_id == r->ck.run_id) {
    char dir[CG_PATH_MAX + 128]; /* last is DIR/ckpt-N.cgck: DIR resumes the newest */
    snprintf(dir, sizeof dir, "%s", last);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    cg_log_warn("--resume %s: step %lld, older than its run's newest checkpoint %s (step "
                "%lld): the run goes on from step %lld, and a checkpoint it writes removes the "
                "run's later ones; to go on from the newest, --resume %s", r->cfg->resume,
                (long long)r->ck.step, last, (long long)lstep, (long long)r->ck.step, dir);
  }
  free(h);
}

/* --init-from without a checkpoint to resume: the weights of a trained model (init_from.h). */
static int load_init_from(cg_run_t *r, char *err, size_t errlen) {
  if (cg_init_from_load(r->cfg, r->c, &r->model, r->params, err, errlen)) return usage(r, err);
  r->init_from = 1;
  return 0;
}

/* --resume: every rank receives rank 0's checkpoint and starts where it says (ckpt.h); else
 * --init-from's weights. */
static int load_resume(cg_run_t *r, char *err, size_t errlen) {
  const cg_config_t *cfg = r->cfg;
  const cg_comm_t *c = r->c;
  const size_t np = r->model.nparams;
  r->params = cg_malloc(sizeof(float) * np, "initial parameters");
  if (!cfg->resume[0]) return cfg->init_from[0] ? load_init_from(r, err, errlen) : 0;
  r->adam_m = cg_malloc(sizeof(float) * np, "AdamW m from the checkpoint");
  r->adam_v = cg_malloc(sizeof(float) * np, "AdamW v from the checkpoint");
  /* a checkpoint with a moving average: the average is its params, the training weights follow
   * (ckpt.h); they are read here and exchanged below, so that params holds what trains on */
  if (c->rank == 0) r->ema_ck = cg_malloc(sizeof(float) * np, "the checkpoint's weights");
  int rc = c->rank == 0 ? read_checkpoint(r, err, errlen) : 0;
  CG_CHECK_MPI(MPI_Bcast(&rc, 1, MPI_INT, 0, c->world));
  if (rc != 0) {
    free(r->ema_ck);
    r->ema_ck = NULL;
  }
  if (rc < 0) {
    CG_CHECK_MPI(MPI_Bcast(err, (int)errlen, MPI_CHAR, 0, c->world));
    return usage(r, err);
  }
  if (rc == 1) {
    if (c->rank == 0)
      printf("resume: %s holds no checkpoint yet: starting at step 0\n",
             !strcmp(cfg->resume, CG_RESUME_LATEST) ? cfg->checkpoint_dir : cfg->resume);
    return cfg->init_from[0] ? load_init_from(r, err, errlen) : 0;
  }
  CG_CHECK_MPI(MPI_Bcast(&r->ck, (int)sizeof r->ck, MPI_BYTE, 0, c->world));
  if (c->rank == 0 && r->ck.ema) { /* params: the training weights; ema_ck: the average */
    float *t = r->params;
    r->params = r->ema_ck;
    r->ema_ck = t;
  }
  if (!r->ck.ema || !cfg->ema_decay) { /* none, or one this run drops (load_ema says so) */
    free(r->ema_ck);
    r->ema_ck = NULL;
  } else if (c->rank != 0) {
    r->ema_ck = cg_malloc(sizeof(float) * np, "the checkpoint's moving average");
  }
  cg_comm_bcast_floats(c, r->params, np);
  cg_comm_bcast_floats(c, r->adam_m, np);
  cg_comm_bcast_floats(c, r->adam_v, np);
  if (r->ema_ck) cg_comm_bcast_floats(c, r->ema_ck, np);
  r->resumed = 1;
  r->s0 = cg_ckpt_map_position(&r->ck, r->ntrain, r->global, r->spe, &r->exact);
  return 0;
}

/* ---- devices: gradient sync, trace, NCCL, the backend ---------------------------------------- */

static cg_backend_cfg_t backend_cfg(const cg_run_t *r) {
  const cg_config_t *cfg = r->cfg;
  cg_backend_cfg_t bc = {0};
  bc.batch = cfg->batch;
  bc.accum = cfg->grad_accum;
  bc.clip_norm = (float)cfg->clip_grad_norm;
  bc.optim = cg_cfg_sgd(cfg) ? CG_OPTIM_SGD : CG_OPTIM_ADAMW;
  bc.momentum = (float)cfg->momentum;
  bc.nesterov = cfg->nesterov;
  bc.dice_weight = (float)cfg->dice_weight;
  bc.class_weight = cg_cfg_class_weight(cfg);
  bc.label_smoothing = (float)cfg->label_smoothing;
  bc.focal_gamma = (float)cfg->focal_gamma;
  bc.ohem_thresh = (float)cfg->ohem_thresh;
  bc.ohem_min_kept = cg_cfg_ohem_min_kept(cfg);
  bc.nclass = cfg->num_classes;
  bc.ignore_index = cfg->ignore_index;
  bc.precision = r->prec;
  bc.threads = r->threads;
  bc.device = r->device;
  bc.deterministic = cfg->deterministic;
  bc.cuda_graph = cfg->cuda_graph;
  bc.tf32 = strcmp(cfg->tf32, "off") != 0; /* auto = on, as PyTorch */
  bc.algo_cache = cfg->algo_cache[0] ? cfg->algo_cache : NULL;
  bc.buckets = &r->buckets;
  bc.gsync = r->nccl ? NULL : r->c->size > 1 ? r->gs : NULL;
  bc.nccl = r->nccl;
  bc.grad_bf16 = !strcmp(cfg->grad_comm, "bf16");
  /* the backend counts its own train steps from 0: --test-nan-step is 1-based and global */
  bc.fault_nan_step = cfg->test_nan_step > r->s0 ? cfg->test_nan_step - 1 - r->s0 : -1;
  bc.trace = r->trace != NULL;
  bc.ema = r->ema;
  return bc;
}

/* --ema-decay: the average starts as the weights (AveragedModel's first update copies them), or
 * is the checkpoint's; a resume that changes whether there is one says what happens. */
static void load_ema(cg_run_t *r) {
  const int root = r->c->rank == 0;
  if (r->resumed && r->ck.ema && !r->ema && root)
    printf("resume: the checkpoint's moving average of the weights is dropped (--ema-decay 0): "
           "training goes on from its training weights, and validation sees them\n");
  if (!r->ema) return;
  if (r->ema_ck) {
    r->ops->set_ema(r->be, r->ema_ck);
    r->ema_started = 1;
    free(r->ema_ck);
    r->ema_ck = NULL;
    return;
  }
  r->ops->set_ema(r->be, r->params);
  r->ema_started = 0;
  if (r->resumed && root)
    printf("resume: the checkpoint has no moving average of the weights: --ema-decay's starts "
           "at step %lld\n", (long long)r->s0 + 1);
}

/* The checkpoint's parameters and optimizer state, or --init-from's weights, or fresh ones. */
static void load_params(cg_run_t *r) {
  if (r->resumed) {
    r->ops->set_params(r->be, r->params);
    /* Another precision's scale (1) means nothing to an fp16 scaler: 0 keeps its initial one. */
    const int same = r->ck.precision == (int)r->prec;
    r->ops->set_opt_state(r->be, r->adam_m, r->adam_v, same ? r->ck.loss_scale : 0.0f,
                          same ? r->ck.scale_good_steps : 0);
  } else {
    if (!r->init_from) cg_model_init_params(&r->model, r->cfg->seed, r->params);
    r->ops->set_params(r->be, r->params);
  }
  load_ema(r);
}

static int start_devices(cg_run_t *r, char *err, size_t errlen) {
  const cg_config_t *cfg = r->cfg;
  cg_comm_t *c = r->c;
  cg_buckets_plan_last(&r->model, cfg->bucket_mb * 1e6, cfg->last_bucket_mb * 1e6,
                       &r->buckets);
  r->gs = cg_gsync_create(c->world, r->buckets.n, r->buckets.off, r->buckets.len,
                          cfg->deterministic);
  cg_gsync_set_dtype(r->gs, strcmp(cfg->grad_comm, "bf16") ? CG_GSYNC_FP32 : CG_GSYNC_BF16);
  long long tr_a = 1, tr_b = -1;
  sscanf(cfg->trace_steps, "%lld:%lld", &tr_a, &tr_b);
  r->trace = cg_trace_create(cfg->trace_out, c->rank, c->host, tr_a, tr_b);
  if (r->trace && c->rank == 0 && (tr_a > r->total || (tr_b >= 0 && tr_b <= r->s0)))
    cg_log_warn("--trace-steps %s: this run trains steps %lld to %lld, so the timeline will "
                "hold none of them", cfg->trace_steps, (long long)r->s0 + 1, (long long)r->total);
  /* Gradient all-reduce: NCCL or MPI (--allreduce; nccl_comm.h says how auto chooses). */
  char arnote[320] = "";
  int use_nccl = cg_nccl_choose(c, cfg->allreduce, r->is_cuda, r->device, cfg->deterministic,
                                arnote, sizeof arnote, err, errlen);
  r->nccl = use_nccl > 0 ? cg_nccl_create(c->world, r->device, err, errlen) : NULL;
  if (use_nccl < 0 || (use_nccl > 0 && !r->nccl)) /* every rank agrees: both are collective */
    return usage(r, err);
  if (c->rank == 0 && arnote[0]) printf("allreduce: %s\n", arnote);
  const cg_backend_cfg_t bc = backend_cfg(r);
  const int rc = r->ops->create(&r->model, &bc, &r->be, err, errlen);
  if (cg_comm_any(c, rc != 0)) {
    /* A backend that fails on one rank fails the job: say which. */
    if (rc) cg_log_info("backend %s: %s", r->ops->name, err);
    CG_CHECK_MPI(MPI_Barrier(c->world));
    if (c->rank == 0)
      fprintf(stderr, "cogpu-dist: error: could not start the %s backend\n", r->ops->name);
    return 1;
  }
  cg_guard_watch_nccl(r->guard, r->nccl);
  load_params(r);
  return 0;
}

/* ---- the step loop's state ------------------------------------------------------------------- */

/* --overwrite-checkpoints without --resume: rank 0, holding the directory's lock, sets the
 * earlier run's files aside (cg_ckpt_set_aside) once every start-up check has passed, so that
 * the new run's checkpoints, best, last and history never mix with them. */
static void set_aside_earlier(cg_run_t *r) {
  const cg_config_t *cfg = r->cfg;
  if (r->c->rank != 0 || !cfg->checkpoint_dir[0] || !cfg->overwrite_checkpoints || cfg->resume[0])
    return;
  char sub[CG_PATH_MAX + 64], err[CG_PATH_MAX + 512];
  int moved = 0;
  if (cg_ckpt_set_aside(cfg->checkpoint_dir, sub, sizeof sub, &moved, err, sizeof err) != 0)
    cg_log_warn("--overwrite-checkpoints: %s; the earlier run's files left there stay beside "
                "this run's (--resume %s follows DIR/last, this run's)", err, cfg->checkpoint_dir);
  else if (moved)
    printf("--overwrite-checkpoints: the earlier run's %d file(s) in %s (checkpoints, best, last, "
           "history.jsonl) moved to %s; nothing was deleted\n", moved, cfg->checkpoint_dir, sub);
  fflush(stdout);
}

/* --lr-schedule plateau's state: the checkpoint's, for the same figure, or a fresh one (the
 * schedule's rate as it is, the worst figure there is as the best). */
static void load_plateau(cg_run_t *r) {
  const int by_loss = cg_run_best_by_loss(r);
  r->lr_scale = 1.0;
  r->pl_best = by_loss ? INFINITY : -INFINITY;
  r->pl_bad = r->pl_cool = 0;
  r->lr_scale_used = 1.0;
  if (strcmp(r->cfg->lr_schedule, "plateau")) return;
  if (!r->val_src && r->c->rank == 0)
    cg_log_warn("--lr-schedule plateau: this run has no validation set, so the learning rate "
                "stays --lr");
  if (!r->resumed) return;
  char other[32];
  double v[4]; /* scale, best, bad, cool */
  const int got = cg_settings_state(r->ck.settings, "plateau-state", by_loss ? "loss" : "iou", v,
                                    4, other, sizeof other);
  if (got > 0 && v[0] > 0 && v[0] <= 1 && cg_settings_count(v[2]) &&
      cg_settings_count(v[3])) {
    r->lr_scale = v[0];
    r->pl_best = v[1];
    r->pl_bad = (int64_t)v[2];
    r->pl_cool = (int64_t)v[3];
  } else if (got < 0 && r->c->rank == 0) {
    printf("resume: --lr-schedule plateau starts afresh at --lr: its state watched %s, this run "
           "watches %s (--best-metric)\n", !strcmp(other, "loss") ? "val_loss" : "the IoU",
           cg_run_best_name(r));
  }
  /* a resume with a lower --lr keeps the floor, as a reduction would */
  if (r->cfg->lr * r->lr_scale < r->cfg->min_lr) r->lr_scale = r->cfg->min_lr / r->cfg->lr;
  r->lr_scale_used = r->lr_scale; /* before a step: the rate a resumed run reports */
}

/* Rank 0 (ck_path is its alone, and the directory may be on its node alone): the checkpoint
 * the run resumed from is its directory's newest: --resume or --resume DIR chose it so, and a
 * FILE (DIR/last, DIR/ckpt-N.cgck) is the one DIR/last names. */
static int resumed_newest(const cg_run_t *r) {
  struct stat st;
  if (!strcmp(r->cfg->resume, CG_RESUME_LATEST) ||
      (stat(r->cfg->resume, &st) == 0 && S_ISDIR(st.st_mode)))
    return 1;
  char last[CG_PATH_MAX + 128];
  return cg_ckpt_last_of(r->ck_path, last, sizeof last, NULL) == 0 &&
         cg_path_same_file(last, r->ck_path) == 1;
}

/* r->refigure, r->revalidate (run.h). Collective: refigure gates collectives (finish's
 * plateau step), so every rank takes rank 0's answer on the newest checkpoint. */
static void decide_again(cg_run_t *r) {
  const int64_t ve = cg_run_val_every(r);
  const int own = r->val_src && r->resumed && r->exact &&
                  !(r->ck.have_val && r->ck.val_step == r->ck.step) &&
                  r->ck.ema == r->ema; /* else another model than its own was validated */
  /* the last step of its own run, which validates before its final checkpoint */
  const int at_end = r->s0 == r->total && r->ck.step == r->ck.total_steps;
  const int mid = !r->cfg->lr_find && ve > 0 && r->s0 > 0 && r->s0 < r->total && r->s0 % ve == 0;
  int newest = own && (at_end || mid) && r->cfg->checkpoint_dir[0] && r->c->rank == 0 &&
               resumed_newest(r);
  CG_CHECK_MPI(MPI_Bcast(&newest, 1, MPI_INT, 0, r->c->world));
  r->refigure = own && at_end && newest;
  r->revalidate = own && mid ? 1 + newest : 0;
}

/* Collective (decide_again). Step health, the step table, the counters carried over from the
 * checkpoint, the run id and the CPU/GPU split controller. */
static void init_step_state(cg_run_t *r) {
  const cg_config_t *cfg = r->cfg;
  const cg_comm_t *c = r->c;
  r->slow = cfg->test_slow_rank == c->rank && cfg->test_slow_ms > 0;
  cg_guard_health_init(&r->health, r->prec == CG_PREC_FP16, cfg->max_bad_steps);
  r->last_done = r->s0;
  r->table = cg_malloc(sizeof(int64_t) * (size_t)c->size, "step table");
  for (int i = 0; i < c->size; i++) r->table[i] = r->s0;
  cg_guard_set_table(r->guard, r->table);
  r->loss_scale = r->resumed ? r->ck.loss_scale : 1.0f;
  r->opt_t0 = r->resumed ? r->ck.opt_t : 0;
  r->skipped0 = r->resumed ? r->ck.skipped_steps : 0;
  load_plateau(r);
  decide_again(r);
  r->es_best = NAN; /* --early-stop-patience: the checkpoint's count, for the same metric */
  char other[32];
  double v[3]; /* best, its step, the validations since */
  if (r->resumed && cfg->early_stop_patience > 0 &&
      cg_settings_state(r->ck.settings, "early-stop-state", cg_run_best_by_loss(r) ? "loss" : "iou",
                        v, 3, other, sizeof other) > 0 &&
      cg_settings_count(v[1]) && cg_settings_count(v[2])) { /* the same figure */
    r->es_best = v[0];
    r->es_best_step = (int64_t)v[1];
    r->es_wait = (int64_t)v[2];
  }
  const int64_t ve = cg_run_val_every(r);
  const int64_t vals = (ve > 0 && r->total > r->s0 ? (r->total - 1) / ve - r->s0 / ve : 0) +
                       (r->revalidate > 0); /* a cut one of step s0, run again */
  const int64_t need = isnan(r->es_best) ? cfg->early_stop_patience + 1
                                         : cfg->early_stop_patience - r->es_wait;
  if (cfg->early_stop_patience > 0 && vals < need && c->rank == 0)
    cg_log_warn("--early-stop-patience %lld: this run validates %lld time(s) before its last "
                "step (every %lld steps), too few to stop it early",
                (long long)cfg->early_stop_patience, (long long)vals, (long long)ve);
  /* a resumed run continues its lineage; a fresh one (or one resumed from a checkpoint made
   * before run ids) starts a new one: rotation never touches another run's checkpoints. So does
   * one resumed with another global batch or training set: its steps are renumbered, and as the
   * same lineage its first checkpoint would remove the earlier run's files of higher step
   * numbers (the one it resumed from among them) as left by an abandoned attempt. */
  r->run_id = r->resumed && r->ck.run_id && r->exact ? r->ck.run_id : cg_ckpt_new_run_id();
  r->last_ckpt_step = -1;
  if (r->resumed) { /* the state loaded is step s0 of this run's steps (ck.step counts batches
                      * of the checkpoint's global batch: with another one it names another step) */
    snprintf(r->last_ckpt, sizeof r->last_ckpt, "%s", r->ck_path);
    r->last_ckpt_step = r->s0;
  }
  cg_split_init(&r->split,
                !strcmp(cfg->split, "cpu")   ? CG_SPLIT_CPU
                : !strcmp(cfg->split, "gpu") ? CG_SPLIT_GPU
                                             : CG_SPLIT_AUTO,
                cfg->batch);
}

/* Rank 0 with --checkpoint-dir keeps host copies to write checkpoints from: params, and the
 * checkpoint's moments where it has them (they pass to ck_m, ck_v). Moments left anywhere else
 * are freed: the backend holds them now. */
static void alloc_ckpt_buffers(cg_run_t *r) {
  const size_t np = r->model.nparams;
  if (r->cfg->checkpoint_dir[0]) {
    r->ckpt_dir = r->cfg->checkpoint_dir;
    if (r->c->rank == 0) {
      r->ck_p = r->params;
      r->ck_m = r->adam_m ? r->adam_m : cg_malloc(sizeof(float) * np, "checkpoint AdamW m");
      r->ck_v = r->adam_v ? r->adam_v : cg_malloc(sizeof(float) * np, "checkpoint AdamW v");
      r->adam_m = r->adam_v = NULL; /* owned as ck_m, ck_v now */
      if (r->ema) r->ck_t = cg_malloc(sizeof(float) * np, "checkpoint training weights");
    }
  }
  free(r->adam_m);
  free(r->adam_v);
  r->adam_m = r->adam_v = NULL;
}

/* Collective (cg_stats_create). The load figures with their --report-ranks view, the progress
 * mode. */
static void init_reporting(cg_run_t *r) {
  const cg_config_t *cfg = r->cfg;
  char gpu_name[48] = "-";
  if (r->is_cuda) snprintf(gpu_name, sizeof gpu_name, "%d:%s", r->place->gpu, r->place->gpu_pci);
  r->stats = cg_stats_create(r->c, gpu_name, r->is_cuda,
                             cfg->stats_out[0] ? cfg->stats_out : NULL);
  cg_stats_set_prom(r->stats, cfg->prom_out);
  /* finish() checks the run and validates after the last report */
  cg_stats_hold_final(r->stats);
  char why[128]; /* checked by cg_cli_check; a failed parse would leave auto, the default */
  cg_rank_view_parse(cfg->report_ranks, &r->view, why, sizeof why);
  cg_stats_set_view(r->stats, r->view);
  const int tty = isatty(STDERR_FILENO);
  if (!strcmp(cfg->progress, "bar") || (!strcmp(cfg->progress, "auto") && tty)) r->bar = 2;
  else if (!strcmp(cfg->progress, "off")) r->bar = 0;
  else r->bar = 1;
}

/* The core each loader helper is pinned to (-1: unpinned). */
static void plan_helpers(cg_run_t *r) {
  r->helper_cpus = cg_malloc(sizeof(int) * (size_t)(r->workers > 0 ? r->workers : 1),
                             "helper cpus");
  cg_topo_helper_cpus(r->place, r->is_cuda, r->workers, r->helper_cpus);
}

/* ---- set-up and teardown --------------------------------------------------------------------- */

int cg_run_setup(cg_run_t *r, const cg_config_t *cfg, cg_comm_t *c, cg_guard_t *guard) {
  static int (*const stages[])(cg_run_t *, char *, size_t) = {
      check_settings_fit, check_same_settings, check_outputs, place_rank, open_data, load_resume,
      start_devices};
  /* the step loop's state: every check has passed, nothing here fails on the user's input */
  static void (*const loop_stages[])(cg_run_t *) = {set_aside_earlier, init_step_state,
                                                     alloc_ckpt_buffers, init_reporting,
                                                     plan_helpers};
  memset(r, 0, sizeof *r);
  r->ck_lock = -1;
  r->cfg = cfg;
  if (cg_cfg_class_weights_balanced(cfg)) { /* open_data writes the weights it counts */
    r->cfg_own = cg_malloc(sizeof *r->cfg_own, "the run's settings");
    *r->cfg_own = *cfg;
    r->cfg = r->cfg_own;
  }
  r->c = c;
  r->guard = guard;
  r->t_begin = cg_now();
  r->ema = cfg->ema_decay > 0;
  char err[2048] = "";
  int code = 0;
  for (size_t i = 0; i < sizeof stages / sizeof *stages; i++)
    if ((code = stages[i](r, err, sizeof err)) != 0) goto fail;
  for (size_t i = 0; i < sizeof loop_stages / sizeof *loop_stages; i++) loop_stages[i](r);
  return 0;
fail:
  cg_guard_failed(guard); /* rank 0 printed why; mpirun's teardown signal is no stop request */
  cg_run_teardown(r);
  cg_run_free_settings(r);
  return code;
}

void cg_run_free_settings(cg_run_t *r) {
  free(r->names_own);
  r->names_own = NULL;
  r->class_names = NULL;
  free(r->cfg_own);
  r->cfg_own = NULL;
  r->cfg = NULL;
}

/* The train/val views first, then the sources they borrow. */
static void destroy_sources(cg_run_t *r) {
  if (r->train_src != r->base_src) cg_source_destroy(r->train_src);
  if (r->val_src != r->val_base) cg_source_destroy(r->val_src);
  cg_source_destroy(r->val_base);
  cg_source_destroy(r->base_src);
  r->train_src = r->val_src = r->val_base = r->base_src = NULL;
}

void cg_run_teardown(cg_run_t *r) {
  free(r->params);
  free(r->adam_m);
  free(r->adam_v);
  free(r->table);
  free(r->ck_m);
  free(r->ck_v);
  free(r->ck_t);
  free(r->ema_ck);
  r->params = r->adam_m = r->adam_v = r->ck_p = r->ck_m = r->ck_v = r->ck_t = r->ema_ck = NULL;
  r->table = NULL;
  cg_stats_destroy(r->stats);
  r->stats = NULL;
  if (r->ops) r->ops->destroy(r->be);
  r->be = NULL;
  r->trace_written = r->trace && cg_trace_close(r->trace) == 0;
  r->trace = NULL;
  cg_guard_watch_nccl(r->guard, NULL);
  cg_nccl_destroy(r->nccl); /* after the backend's graphs are gone, before MPI_Finalize */
  r->nccl = NULL;
  cg_gsync_destroy(r->gs);
  r->gs = NULL;
  destroy_sources(r);
  free(r->helper_cpus);
  r->helper_cpus = NULL;
  cg_topo_destroy(r->topo);
  r->topo = NULL;
  r->place = NULL;
  if (r->ck_lock >= 0) close(r->ck_lock); /* the next run may take the directory */
  r->ck_lock = -1;
}
