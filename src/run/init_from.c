/* init_from.c: `train --init-from SRC`, a new run's weights from a trained model (init_from.h has
 * the rules). */
#include "init_from.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "atomic_file.h" /* cg_file_read: a safetensors file whole */
#include "ckpt.h"        /* cg_ckpt_resolve, _header, _read, _model, _is_safetensors */
#include "classnames.h"  /* cg_classnames_json_list: the model's class names, checked */
#include "cli.h"         /* cg_cli_opts, cg_cli_check, cg_cli_data_path */
#include "export.h"      /* cg_import_parse: a safetensors file's model and weights */
#include "feat.h"        /* CG_NFEAT: the input channels this build feeds */
#include "json.h"        /* cg_json_parse: the class names of a checkpoint's settings */
#include "log.h"
#include "run_settings.h" /* cg_settings_all_or_none: every rank has --init-from, or none */

#define SRC_HINT                                                                                  \
  "--init-from takes a checkpoint FILE, DIR/best, DIR/last, a checkpoint DIR or a .safetensors "  \
  "file of cogpu-dist export"

/* What SRC is, as rank 0 found it (sent to every rank as bytes). */
typedef struct {
  char path[CG_PATH_MAX]; /* the file the weights come from, absolute */
  int in_c, base, depth, nclass;
  char names[CG_CLASSNAMES_LEN]; /* its run's --class-names as a list ("" = none) */
} src_t;

/* A safetensors file by its first bytes (cg_ckpt_is_safetensors): its header length is not
 * judged here, so a damaged one gets the importer's message, not a checkpoint reader's. */
static int looks_safetensors(const char *path) {
  uint8_t b[9];
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  const size_t got = fread(b, 1, sizeof b, f);
  fclose(f);
  return cg_ckpt_is_safetensors(b, got);
}

/* Reads a safetensors file's model and weights (*params malloc'd) and, names non-NULL, the
 * class names of its metadata (CG_CLASSNAMES_LEN bytes). 0, or -1 with err. */
static int read_safetensors(const char *path, cg_model_t *m, float **params, char *names,
                            char *err, size_t errlen) {
  size_t len = 0;
  char why[1024];
  uint8_t *buf = (uint8_t *)cg_file_read(path, &len, why, sizeof why);
  if (!buf) {
    snprintf(err, errlen, "--init-from %s: %s", path, why);
    return -1;
  }
  cg_ckpt_info_t *info = cg_calloc(1, sizeof *info, "safetensors metadata");
  const int rc = cg_import_parse(buf, len, m, info, names, params, why, sizeof why);
  free(buf);
  free(info);
  if (rc) snprintf(err, errlen, "--init-from %s: not a usable safetensors file: %s", path, why);
  return rc;
}

static void report_skip(void *ctx, const char *line) {
  (void)ctx;
  cg_log_warn("--init-from: %s", line);
}

/* Rank 0: what SRC is, and its model. 0, or -1 with err. */
static int probe(const char *spec, src_t *s, char *err, size_t errlen) {
  memset(s, 0, sizeof *s);
  struct stat st;
  if (stat(spec, &st) != 0) {
    snprintf(err, errlen, "--init-from %s: %s", spec, strerror(errno));
    return -1;
  }
  cg_model_t *m = cg_malloc(sizeof *m, "model");
  cg_ckpt_info_t *info = cg_malloc(sizeof *info, "checkpoint header");
  int rc = 0;
  if (S_ISREG(st.st_mode) && looks_safetensors(spec)) {
    float *p = NULL;
    rc = read_safetensors(spec, m, &p, s->names, err, errlen);
    free(p);
    snprintf(s->path, sizeof s->path, "%s", spec);
  } else {
    char why[CG_PATH_MAX + 512];
    rc = cg_ckpt_resolve(spec, info, s->path, sizeof s->path, report_skip, NULL, why,
                         sizeof why);
    if (rc) /* not a checkpoint at all: say what is */
      snprintf(err, errlen, "--init-from %.1200s%s", why,
               rc == 1 || strstr(why, "bad magic") ? " (" SRC_HINT ")" : "");
    if (!rc && (rc = cg_ckpt_model(s->path, info, m, why, sizeof why)) != 0)
      snprintf(err, errlen, "--init-from %.1400s", why);
    if (!rc) { /* its run's settings: the class names */
      char jerr[64];
      cg_json_t *j = info->settings[0] ? cg_json_parse(info->settings, jerr, sizeof jerr) : NULL;
      cg_classnames_json_list(j, "class-names", m->nclass, s->names);
      cg_json_free(j);
    }
  }
  if (!rc && cg_cli_data_path(s->path, s->path, sizeof s->path) != 0) {
    snprintf(err, errlen, "--init-from %.900s: cannot be made an absolute path", s->path);
    rc = -1;
  }
  s->in_c = m->in_c;
  s->base = m->base;
  s->depth = m->depth;
  s->nclass = m->nclass;
  free(m);
  free(info);
  return rc;
}

/* The model flags from SRC, or checked against it; then the command line checked again (the
 * image size against the depth). 0, or -1 with err. */
static int apply(cg_config_t *cfg, const src_t *s, char *err, size_t errlen) {
  if (s->in_c != 3 + CG_NFEAT) {
    snprintf(err, errlen, "--init-from %.900s: its model takes %d input channels; this build "
             "feeds %d", s->path, s->in_c, 3 + CG_NFEAT);
    return -1;
  }
  const cg_opts_set_t set = cg_cli_opts(CG_CMD_TRAIN, cfg);
  const struct {
    const char *flag;
    int *v, src;
  } f[2] = {{"model-base", &cfg->model_base, s->base}, {"model-depth", &cfg->model_depth,
                                                         s->depth}};
  for (int i = 0; i < 2; i++) {
    if (!cg_opts_given(&set, cfg->argc, cfg->argv, f[i].flag)) {
      *f[i].v = f[i].src;
    } else if (*f[i].v != f[i].src) {
      snprintf(err, errlen, "--%s %d: the --init-from model (%.700s) has %d; its weights fit "
               "no other shape (leave the flag out to take it)", f[i].flag, *f[i].v, s->path,
               f[i].src);
      return -1;
    }
  }
  /* the default, 1, would give a K-class model a new binary head unasked: say which is meant */
  if (s->nclass != cfg->num_classes && !cg_opts_given(&set, cfg->argc, cfg->argv, "num-classes")) {
    snprintf(err, errlen, "--init-from %.700s: its model has %d classes: give --num-classes (%d "
             "keeps its head; another count gets a new one)", s->path, s->nclass, s->nclass);
    return -1;
  }
  /* its head kept, its classes keep their names, unless the command line names them */
  if (s->names[0] && s->nclass == cfg->num_classes &&
      !cg_opts_given(&set, cfg->argc, cfg->argv, "class-names"))
    snprintf(cfg->class_names, sizeof cfg->class_names, "%s", s->names);
  snprintf(cfg->init_from, sizeof cfg->init_from, "%s", s->path);
  cfg->init_read = 1;
  return cg_cli_check(cfg, err, errlen);
}

int cg_init_from_settings(cg_config_t *cfg, cg_comm_t *c) {
  /* every rank starts from SRC, or none: the ones that do wait for rank 0's reading below */
  if (cg_settings_all_or_none(c, cfg->init_from[0], "--init-from")) return CG_EXIT_USAGE;
  if (cfg->resume_found) { /* cfg->init_from: the checkpoint's record (run_settings.c) */
    const cg_opts_set_t set = cg_cli_opts(CG_CMD_TRAIN, cfg);
    if (c->rank == 0 && cg_opts_given(&set, cfg->argc, cfg->argv, "init-from"))
      printf("init-from: not used: the run resumes from its own checkpoint (--resume), whose "
             "weights go on training\n");
    return 0;
  }
  if (!cfg->init_from[0]) return 0;
  src_t s;
  char err[2048] = "";
  int rc = c->rank == 0 ? probe(cfg->init_from, &s, err, sizeof err) : 0;
  CG_CHECK_MPI(MPI_Bcast(&rc, 1, MPI_INT, 0, c->world));
  if (rc) { /* read on rank 0 alone: it says why */
    if (c->rank == 0) fprintf(stderr, "cogpu-dist: error: %s\n", err);
    return CG_EXIT_USAGE;
  }
  CG_CHECK_MPI(MPI_Bcast(&s, (int)sizeof s, MPI_BYTE, 0, c->world));
  rc = apply(cfg, &s, err, sizeof err);
  cfg->init_names = !rc && s.names[0] && !strcmp(cfg->class_names, s.names);
  return cg_comm_report_errors(c, rc ? err : NULL) ? CG_EXIT_USAGE : 0;
}

/* Rank 0, once the weights are in: what they are, which layers came from them and whether the
 * classes kept its names. in: the checkpoint's header, NULL for a safetensors file. */
static void say_source(const cg_config_t *cfg, const cg_ckpt_info_t *in, const cg_model_t *sm,
                       int nclass) {
  const char *path = cfg->init_from;
  const char *what = in && in->ema ? "the weights' moving average (--ema-decay)" : "the weights";
  char val[96] = "";
  if (in && in->have_val && in->val_step == in->step)
    snprintf(val, sizeof val, "; validation %s %.4f at that step", sm->nclass > 1 ? "mIoU" : "IoU",
             in->val_iou);
  if (!in)
    printf("init-from: the weights of %s (base %d, depth %d, %d class(es))\n", path, sm->base,
           sm->depth, sm->nclass);
  else
    printf("init-from: %s of %s (step %lld; base %d, depth %d, %d class(es)%s)\n", what, path,
           (long long)in->step, sm->base, sm->depth, sm->nclass, val);
  if (sm->nclass == nclass)
    printf("init-from: every layer from it, the head too; the optimizer's state, the step count "
           "and the schedule start afresh\n");
  else
    printf("init-from: every layer but the head from it; the head is new (%d class(es), it has "
           "%d), initialised as a fresh run's; the optimizer's state, the step count and the "
           "schedule start afresh\n", nclass, sm->nclass);
  if (cfg->init_names)
    printf("init-from: the classes keep its names: %s (--class-names gives others, or none)\n",
           cfg->class_names);
  fflush(stdout);
}

/* Rank 0: the file's weights into the run's (fresh ones first: the head's stay when the class
 * counts differ). 0, or -1 with err. */
static int read_weights(const cg_config_t *cfg, const cg_model_t *m, float *params, char *err,
                        size_t errlen) {
  const char *path = cfg->init_from;
  cg_model_t *sm = cg_malloc(sizeof *sm, "model");
  float *sp = NULL;
  int rc = 0;
  const int st = looks_safetensors(path);
  cg_ckpt_info_t *info = st ? NULL : cg_malloc(sizeof *info, "checkpoint header");
  if (st) {
    rc = read_safetensors(path, sm, &sp, NULL, err, errlen);
  } else {
    char why[CG_PATH_MAX + 512] = "";
    /* the header for the model, then one read of the whole file, verified */
    if (cg_ckpt_header(path, info) != 0) {
      snprintf(why, sizeof why, "%s: its header cannot be read or trusted", path);
      rc = -1;
    }
    if (!rc) rc = cg_ckpt_model(path, info, sm, why, sizeof why);
    if (!rc) {
      const cg_ckpt_shape_t want = info->shape;
      sp = cg_malloc(3 * sizeof(float) * sm->nparams, "--init-from weights and moments");
      if (cg_ckpt_read(path, &want, info, sp, sp + sm->nparams, sp + 2 * sm->nparams, NULL, why,
                       sizeof why) != CG_CKPT_OK)
        rc = -1;
    }
    if (rc) snprintf(err, errlen, "--init-from %.1400s", why);
  }
  const cg_layer_t *head = &m->layers[m->nlayers - 1];
  if (!rc && (sm->in_c != m->in_c || sm->base != m->base || sm->depth != m->depth ||
              sm->layers[sm->nlayers - 1].w_off != head->w_off)) {
    snprintf(err, errlen, "--init-from %.900s: the file changed since the run started: its "
             "model is no longer base %d, depth %d", path, m->base, m->depth);
    rc = -1;
  }
  if (!rc) {
    cg_model_init_params(m, cfg->seed, params);
    /* the flat layout puts the head last: every other layer's weights are the prefix */
    const size_t keep = sm->nclass == m->nclass ? m->nparams : head->w_off;
    memcpy(params, sp, sizeof(float) * keep);
    say_source(cfg, info, sm, m->nclass);
  }
  free(info);
  free(sp);
  free(sm);
  return rc;
}

int cg_init_from_load(const cg_config_t *cfg, const cg_comm_t *c, const cg_model_t *m,
                      float *params, char *err, size_t errlen) {
  int rc = c->rank == 0 ? read_weights(cfg, m, params, err, errlen) : 0;
  CG_CHECK_MPI(MPI_Bcast(&rc, 1, MPI_INT, 0, c->world));
  if (rc) {
    CG_CHECK_MPI(MPI_Bcast(err, (int)errlen, MPI_CHAR, 0, c->world));
    return -1;
  }
  cg_comm_bcast_floats(c, params, m->nparams);
  return 0;
}
