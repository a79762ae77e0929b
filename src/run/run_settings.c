/* run_settings.c: the settings a checkpoint stores and `train --resume` takes back
 * (run_settings.h has the rules; cli.c's table the flags, their types and fields). */
#include "run_settings.h"

#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt.h" /* cg_ckpt_find / cg_ckpt_read: the checkpoint --resume will load */
#include "cli.h"  /* cg_cli_opts: the table; cg_cli_check after the merge */
#include "json.h" /* cg_json_parse: the stored object */
#include "log.h"  /* CG_CHECK_MPI, CG_EXIT_USAGE */

/* BY_TABLE: refused when it maps otherwise, whatever its spelling (cg_cli_check compares the
 * map's table, which the checkpoint keeps: --label-map); not given, the checkpoint's map.
 * RECORD: stored for the record only: taken back on resume whatever the command line says, never
 * compared (--init-from: a resumed run has its weights, and its checkpoints keep naming the file
 * the run started from). */
typedef enum { REFUSED, NOTICE, BY_TABLE, RECORD } rule_t;

/* Every stored flag and its rule on resume; README.md's table follows this list. A name the
 * table lacks is skipped. */
static const struct {
  const char *name;
  rule_t rule;
} kStored[] = {
    {"model-base", REFUSED},    {"model-depth", REFUSED},   {"image-size", REFUSED},
    {"num-classes", REFUSED},   {"ignore-index", REFUSED},  {"seed", REFUSED},
    {"data", REFUSED},          {"val-data", REFUSED},      {"val-fraction", REFUSED},
    {"label-map", BY_TABLE},    {"class-names", NOTICE},
    {"train-samples", REFUSED}, {"val-samples", REFUSED},   {"crop", REFUSED},
    {"crop-scale", REFUSED},    {"color-jitter", REFUSED},  {"rotate", REFUSED},
    {"crop-cat-max", REFUSED},  {"exif-orientation", REFUSED},
    {"flip", REFUSED},          {"batch", NOTICE},          {"grad-accum", NOTICE},
    {"steps", NOTICE},
    {"epochs", NOTICE},         {"optimizer", REFUSED},     {"lr", NOTICE},
    {"weight-decay", NOTICE},
    {"beta1", NOTICE},          {"beta2", NOTICE},          {"eps", NOTICE},
    {"momentum", NOTICE},       {"nesterov", NOTICE},
    {"clip-grad-norm", NOTICE}, {"ema-decay", NOTICE},      {"dice-weight", NOTICE},
    {"class-weights", NOTICE},  {"pos-weight", NOTICE},     {"label-smoothing", NOTICE},
    {"focal-gamma", NOTICE},    {"ohem-thresh", NOTICE},    {"ohem-min-kept", NOTICE},
    {"early-stop-patience", NOTICE}, {"early-stop-min-delta", NOTICE},
    {"warmup-steps", NOTICE},   {"lr-schedule", NOTICE},    {"lr-power", NOTICE},
    {"min-lr", NOTICE},         {"lr-milestones", NOTICE},  {"lr-gamma", NOTICE},
    {"lr-patience", NOTICE},    {"lr-threshold", NOTICE},   {"lr-cooldown", NOTICE},
    {"precision", NOTICE},
    {"backend", NOTICE},        {"tf32", NOTICE},           {"deterministic", NOTICE},
    {"bucket-mb", NOTICE},      {"skip-bad", NOTICE},       {"max-image-pixels", NOTICE},
    {"val-every", NOTICE},      {"checkpoint-every", NOTICE}, {"keep", NOTICE},
    {"best-metric", NOTICE},    {"grad-comm", NOTICE},      {"val-mode", NOTICE},
    {"last-bucket-mb", NOTICE},  {"init-from", RECORD},
};
#define NSTORED (sizeof kStored / sizeof kStored[0])

static const cg_opt_t *row(const cg_opts_set_t *set, const char *name) {
  for (size_t i = 0; i < set->n; i++)
    if (!strcmp(set->opts[i].name, name) && (set->opts[i].cmds & set->cmds)) return &set->opts[i];
  return NULL;
}

/* d in the shortest of %.15g, %.16g, %.17g that reads back as d: 0.05, not the
 * 0.050000000000000003 of %.17g alone. */
static void fmt_double(double d, char *buf, size_t len) {
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, len, "%.*g", prec, d);
    if (strtod(buf, NULL) == d) return;
  }
}

/* The value of o in cfg as the command line writes it. */
static void fmt(const cg_opt_t *o, const cg_config_t *cfg, char *buf, size_t len) {
  const char *p = (const char *)cfg + o->off;
  switch (o->type) {
    case CG_OPT_INT: snprintf(buf, len, "%d", *(const int *)p); break;
    case CG_OPT_I64: snprintf(buf, len, "%" PRId64, *(const int64_t *)p); break;
    case CG_OPT_U64: snprintf(buf, len, "%" PRIu64, *(const uint64_t *)p); break;
    case CG_OPT_DBL: fmt_double(*(const double *)p, buf, len); break;
    case CG_OPT_FLAG:
    case CG_OPT_ONOFF: snprintf(buf, len, "%s", *(const int *)p ? "on" : "off"); break;
    case CG_OPT_STR:
    case CG_OPT_OPTSTR: snprintf(buf, len, "%s", p); break;
    default: snprintf(buf, len, "?"); break;
  }
}

/* Sets o in cfg from the stored text v (written by fmt): 0, or -1 when it does not parse. */
static int set_stored(const cg_opt_t *o, cg_config_t *cfg, const char *v) {
  char *p = (char *)cfg + o->off, *end = NULL;
  errno = 0;
  switch (o->type) {
    case CG_OPT_INT: {
      long x = strtol(v, &end, 10);
      if (x < -2147483647L || x > 2147483647L) return -1;
      *(int *)p = (int)x;
      break;
    }
    case CG_OPT_I64: *(int64_t *)p = strtoll(v, &end, 10); break;
    case CG_OPT_U64: *(uint64_t *)p = strtoull(v, &end, 10); break;
    case CG_OPT_DBL: *(double *)p = strtod(v, &end); break;
    case CG_OPT_FLAG:
    case CG_OPT_ONOFF:
      if (strcmp(v, "on") && strcmp(v, "off")) return -1;
      *(int *)p = !strcmp(v, "on");
      return 0;
    case CG_OPT_STR:
    case CG_OPT_OPTSTR:
      if (strlen(v) >= o->size) return -1;
      memcpy(p, v, strlen(v) + 1);
      return 0;
    default: return -1;
  }
  return errno || end == v || *end ? -1 : 0;
}

/* JSON string body of s (quotes and backslashes escaped, control bytes as \u00XX). */
static size_t json_esc(const char *s, char *out, size_t len) {
  size_t n = 0;
  if (!len) return (size_t)-1;
  out[0] = 0; /* an empty setting is "": out must not keep the previous setting's text */
  for (; *s; s++) {
    char e[8];
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') snprintf(e, sizeof e, "\\%c", ch);
    else if (ch < 0x20) snprintf(e, sizeof e, "\\u%04x", ch);
    else snprintf(e, sizeof e, "%c", ch);
    const size_t k = strlen(e);
    if (n + k + 1 > len) return (size_t)-1;
    memcpy(out + n, e, k + 1);
    n += k;
  }
  return n;
}

int cg_settings_json(const cg_config_t *cfg, char *buf, size_t len) {
  cg_config_t tmp = *cfg;
  const cg_opts_set_t set = cg_cli_opts(CG_CMD_TRAIN, &tmp);
  size_t n = (size_t)snprintf(buf, len, "{");
  for (size_t i = 0; i < NSTORED; i++) {
    const cg_opt_t *o = row(&set, kStored[i].name);
    if (!o) continue;
    char v[CG_SETTING_MAX + 8], e[2 * CG_SETTING_MAX + 64];
    fmt(o, cfg, v, sizeof v);
    if (json_esc(v, e, sizeof e) == (size_t)-1) goto overflow;
    const int k = snprintf(buf + n, len - n, "%s\"%s\": \"%s\"", n > 1 ? ", " : "", o->name, e);
    if (k < 0 || (size_t)k >= len - n) goto overflow;
    n += (size_t)k;
  }
  if (cfg->label_map_table[0]) { /* the map itself: a map file edited since is another map */
    const int k = snprintf(buf + n, len - n, ", \"label-map-table\": \"%s\"",
                           cfg->label_map_table);
    if (k < 0 || (size_t)k >= len - n) goto overflow;
    n += (size_t)k;
  }
  /* what the reader knows of this writer: format 2 stores an empty setting as "" (below) */
  const int k = snprintf(buf + n, len - n, ", \"settings-format\": \"2\"}");
  if (k < 0 || (size_t)k >= len - n) goto overflow;
  return 0;
overflow:
  snprintf(buf, len, "{}");
  return -1;
}

int cg_settings_add(char *json, size_t len, const char *key, const char *value) {
  const size_t n = strlen(json);
  if (n < 2 || json[n - 1] != '}') return -1;
  const size_t need = strlen(key) + strlen(value) + 10; /* , "": ""} and the NUL */
  if (n - 1 + need > len) return -1;
  snprintf(json + n - 1, len - (n - 1), "%s\"%s\": \"%s\"}", n > 2 ? ", " : "", key, value);
  return 0;
}

int cg_settings_add_state(char *json, size_t len, const char *key, const char *metric,
                          const double *v, int n) {
  char s[256];
  size_t k = (size_t)snprintf(s, sizeof s, "%s", metric);
  for (int i = 0; i < n && k < sizeof s; i++)
    k += (size_t)snprintf(s + k, sizeof s - k, " %.17g", v[i]);
  return k < sizeof s ? cg_settings_add(json, len, key, s) : -1;
}

int cg_settings_state(const char *json, const char *key, const char *metric, double *v, int n,
                      char *other, size_t olen) {
  cg_json_t *j = cg_json_parse(json, NULL, 0);
  const char *s = j ? cg_json_str(j, key, "") : "";
  const size_t m = strcspn(s, " ");
  int got = m > 0 && m < 32;
  const char *p = s + m;
  for (int i = 0; got && i < n; i++) {
    char *end;
    v[i] = strtod(p, &end);
    got = end != p && !isnan(v[i]); /* a plateau's best starts at +-inf */
    p = end;
  }
  if (got && *p) got = 0; /* trailing text: not a state this build wrote */
  if (got && (m != strlen(metric) || strncmp(s, metric, m))) {
    snprintf(other, olen, "%.*s", (int)m, s);
    got = -1;
  }
  cg_json_free(j);
  return got;
}

/* The refusal's hint for --optimizer: how to go on from the weights with another one. */
static const char *optimizer_hint(const char *name) {
  return strcmp(name, "optimizer") ? ""
                                   : ": --init-from takes its weights, the optimizer's state "
                                     "starts afresh";
}

/* A setting the checkpoint's build did not know (added since), given on the command line with
 * another value than the default that build ran with: a NOTICE one is said as a changed one is
 * (out: NULL = quiet); a REFUSED one is refused as a changed one is (-1 with the message in
 * err: --optimizer sgd on an AdamW run's checkpoint). 0 otherwise. */
static int check_unstored(FILE *out, const cg_opt_t *o, const cg_opts_set_t *set,
                          const cg_config_t *cfg, rule_t rule, char *err, size_t errlen) {
  if ((rule != NOTICE && rule != REFUSED) || !cg_opts_given(set, cfg->argc, cfg->argv, o->name))
    return 0;
  /* builds without --crop-scale cropped inside the centred square, which is no value of it:
   * cg_settings_apply says so, and the run takes the flag as those builds took none */
  if (!strcmp(o->name, "crop-scale")) return 0;
  cg_config_t *def = cg_malloc(sizeof *def, "default settings");
  cg_cli_defaults(def);
  char now[CG_SETTING_MAX + 8], was[CG_SETTING_MAX + 8];
  fmt(o, cfg, now, sizeof now);
  fmt(o, def, was, sizeof was);
  free(def);
  if (!strcmp(now, was)) return 0;
  if (rule == REFUSED) {
    snprintf(err, errlen, "--%s: the checkpoint's build did not store it: it ran with the "
             "default, %.300s; the command line has %.300s, and a resumed run cannot change it "
             "(leave the flag out, or start a new run with another --checkpoint-dir%s)", o->name,
             was[0] ? was : "none", now, optimizer_hint(o->name));
    return -1;
  }
  if (out)
    fprintf(out, "resume: --%s %s (the checkpoint's build did not store it: it ran with the "
            "default, %s): the run goes on with the new value\n", o->name, now,
            was[0] ? was : "none");
  return 0;
}

int cg_settings_apply(cg_config_t *cfg, const char *json, FILE *out, char *err, size_t errlen) {
  char jerr[256];
  cg_json_t *j = cg_json_parse(json, jerr, sizeof jerr);
  if (!j || j->type != CG_JSON_OBJ) {
    snprintf(err, errlen, "--resume: the checkpoint's settings are not a JSON object (%s)",
             j ? "another JSON value" : jerr);
    cg_json_free(j);
    return -1;
  }
  const cg_opts_set_t set = cg_cli_opts(CG_CMD_TRAIN, cfg);
  int rc = 0;
  /* the notices go out only when the merged settings pass the checks: a refused resume says
   * nothing of a run that "goes on" */
  FILE *const said = out;
  char *nbuf = NULL;
  size_t nlen = 0;
  FILE *nf = said ? open_memstream(&nbuf, &nlen) : NULL;
  if (nf) out = nf;
  /* Settings without "settings-format" (builds before 2026-12-05) stored an empty --val-data as
   * the text of the setting before it, --data. With synthetic data --val-data was ignored, so
   * it is read as none. With files, a checkpoint naming one source for both is read as none
   * too, with a notice: a run that meant it (validating on its training data) says so again
   * with --val-data. */
  const char *sd = cg_json_str(j, "data", NULL), *sv = cg_json_str(j, "val-data", NULL);
  const int old_format = !cg_json_str(j, "settings-format", NULL) && sd && sv && sv[0];
  const int old_syn = old_format && !strcmp(sd, "synthetic");
  const int old_val = old_format && !old_syn && !strcmp(sd, sv) && !cg_opts_given(&set, cfg->argc, cfg->argv, "val-data");
  if (old_val && out)
    fprintf(out, "resume: the checkpoint names %s as --val-data too, as builds before "
            "2026-12-05 stored an empty --val-data: taken as none (the held-out --val-fraction "
            "split); to validate on the training data itself, give --val-data %s\n", sd, sd);
  /* builds before 2026-12-06 (no "crop-scale") cropped inside the centred fitted square */
  const char *sc = cg_json_str(j, "crop", NULL);
  if (out && sd && strcmp(sd, "synthetic") && sc && !strcmp(sc, "on") &&
      !cg_json_str(j, "crop-scale", NULL))
    fprintf(out, "resume: the checkpoint's build took its crops inside each image's centred "
            "square; this one takes them over the whole image (--crop-scale 0.75:1): from here "
            "on a non-square image's sides are trained on too\n");
  for (size_t i = 0; i < NSTORED && !rc; i++) {
    const cg_opt_t *o = row(&set, kStored[i].name);
    const cg_json_t *v = o ? cg_json_get(j, o->name) : NULL;
    if (v && v->type != CG_JSON_STR) { /* every build stores text: a damaged or edited trailer */
      snprintf(err, errlen, "--resume: the checkpoint's setting \"%s\" is not text: its "
               "settings are damaged", o->name);
      rc = -1;
      break;
    }
    const char *stored = o ? cg_json_str(j, o->name, NULL) : NULL;
    if (!stored) { /* not stored by the writer's build: the command line's value */
      if (o && check_unstored(out, o, &set, cfg, kStored[i].rule, err, errlen)) rc = -1;
      continue;
    }
    if (kStored[i].rule == RECORD) { /* the run's own record, whatever the command line says */
      (void)set_stored(o, cfg, stored); /* written by a build of the same field sizes */
      continue;
    }
    if ((old_val || old_syn) && !strcmp(o->name, "val-data")) stored = "";
    /* with --val-data the fraction is unused: builds before 2026-12-05 stored the default */
    if (!strcmp(o->name, "val-fraction") && sv && sv[0] && !old_val && !old_syn) stored = "0";
    char now[CG_SETTING_MAX + 8], abs[CG_PATH_MAX], num[32];
    fmt(o, cfg, now, sizeof now);
    /* builds before 2026-12-06 stored a number with %.17g (0.050000000000000003): compared and
     * shown as the shortest text of the same double */
    char *end = NULL;
    const double d = o->type == CG_OPT_DBL ? strtod(stored, &end) : 0;
    if (end && end != stored && !*end) {
      fmt_double(d, num, sizeof num);
      stored = num;
    }
    /* builds before 2026-12-05 stored the data paths as typed: relative to this directory */
    if ((!strcmp(o->name, "data") || !strcmp(o->name, "val-data")) &&
        cg_cli_data_path(stored, abs, sizeof abs) == 0)
      stored = abs;
    if (!cg_opts_given(&set, cfg->argc, cfg->argv, o->name)) {
      if (set_stored(o, cfg, stored) != 0) {
        snprintf(err, errlen, "--resume: the checkpoint's value of --%s, '%.200s', is not valid",
                 o->name, stored);
        rc = -1;
      }
    } else if (strcmp(now, stored) != 0 && kStored[i].rule != BY_TABLE) {
      if (kStored[i].rule == REFUSED) {
        snprintf(err, errlen, "--%s: the checkpoint has %.300s, the command line %.300s; a "
                 "resumed run cannot change it (leave the flag out, or start a new run with "
                 "another --checkpoint-dir%s)", o->name, stored, now, optimizer_hint(o->name));
        rc = -1;
      } else if (out && !(!strcmp(o->name, "epochs") && cfg->steps > 0)) { /* --steps rules */
        fprintf(out, "resume: --%s %s (the checkpoint has %s): the run goes on with the new "
                "value\n", o->name, now[0] ? now : "none", stored[0] ? stored : "none");
      }
    }
  }
  const char *table = cg_json_str(j, "label-map-table", "");
  if (strlen(table) < sizeof cfg->label_map_table) /* cg_cli_check compares it with the file */
    snprintf(cfg->label_map_table, sizeof cfg->label_map_table, "%s", table);
  cg_json_free(j);
  cfg->merged = 1;
  if (!rc && cg_cli_check(cfg, err, errlen) != 0) rc = -1;
  if (nf) {
    fclose(nf);
    if (!rc && nbuf) fputs(nbuf, said);
    free(nbuf);
  }
  return rc;
}

/* Rank 0: the settings of the checkpoint --resume names ("" for a checkpoint of format 3 or
 * before, which stored none), its global batch (*global) and its optimizer steps (*opt_t), 0
 * when none. 1 when it found a valid one; 0 when the directory holds no checkpoint yet (a fresh
 * start); -1 with err when the file, or every checkpoint of the directory, is damaged or
 * unreadable: said here, with the real reason, since the settings of the command line alone
 * would make the run's own read call any such file "another model shape". */
static int find_settings(const cg_config_t *cfg, char *settings, int *is_dir, int64_t *global,
                         int64_t *opt_t, char *err, size_t errlen) {
  settings[0] = 0;
  *global = *opt_t = 0;
  const int latest = !strcmp(cfg->resume, CG_RESUME_LATEST);
  const char *src = latest ? cfg->checkpoint_dir : cfg->resume;
  struct stat st;
  *is_dir = latest || (stat(src, &st) == 0 && S_ISDIR(st.st_mode));
  cg_ckpt_info_t *in = cg_malloc(sizeof *in, "checkpoint header");
  char path[CG_PATH_MAX + 64], why[800];
  char target[CG_PATH_MAX + 64]; /* --resume DIR/last or DIR/best: the file it names */
  if (!*is_dir && cg_ckpt_pointer_target(src, target, sizeof target)) src = target;
  int rc;
  if (*is_dir) {
    rc = cg_ckpt_find(src, NULL, in, NULL, NULL, NULL, NULL, path, sizeof path, NULL, NULL, why,
                      sizeof why);
    if (rc < 0) { /* once more, to say why each file was refused */
      cg_ckpt_find(src, NULL, in, NULL, NULL, NULL, NULL, path, sizeof path, cg_log_warn_line,
                   NULL, why, sizeof why);
      snprintf(err, errlen, "%.500s (--resume; `cogpu-dist inspect %.300s` says why each is "
               "refused)", why, src);
    }
    rc = rc == 0 ? 1 : rc > 0 ? 0 : -1;
  } else {
    rc = cg_ckpt_read(src, NULL, in, NULL, NULL, NULL, NULL, why, sizeof why) == CG_CKPT_OK
             ? 1
             : -1;
    if (rc < 0) snprintf(err, errlen, "--resume: %s", why);
  }
  if (rc == 1) {
    memcpy(settings, in->settings, CG_CKPT_SETTINGS_MAX);
    *global = (int64_t)in->ranks * in->batch;
    *opt_t = in->opt_t;
  }
  free(in);
  return rc;
}

/* A run resumed on another number of ranks without --grad-accum (and with the checkpoint's
 * --batch, given or not) keeps the checkpoint's global batch where a whole number of
 * micro-batches of its --batch makes it: a job requeued on half its nodes accumulates two, and
 * back on all of them, none. Else the settings stand as merged (another --batch: another global
 * batch, resumed at the mapped position). */
static void keep_global_batch(cg_config_t *cfg, const char *settings, int ranks, int64_t global,
                              FILE *out) {
  const cg_opts_set_t set = cg_cli_opts(CG_CMD_TRAIN, (void *)cfg);
  if (global <= 0 || cg_opts_given(&set, cfg->argc, cfg->argv, "grad-accum")) return;
  cg_json_t *j = cg_json_parse(settings, NULL, 0);
  const char *sb = j ? cg_json_str(j, "batch", NULL) : NULL;
  const int same_batch = sb && atoi(sb) == cfg->batch;
  cg_json_free(j);
  if (!same_batch) return;
  const int64_t per = (int64_t)ranks * cfg->batch;
  if (global % per || global / per < 1 || global / per > CG_GRAD_ACCUM_MAX ||
      global / per == cfg->grad_accum)
    return;
  const int was = cfg->grad_accum;
  cfg->grad_accum = (int)(global / per);
  if (out)
    fprintf(out, "resume: --grad-accum %d keeps the checkpoint's global batch %lld on %d rank(s) "
            "x --batch %d (it trained with --grad-accum %d); give --grad-accum to choose "
            "otherwise\n", cfg->grad_accum, (long long)global, ranks, cfg->batch, was);
}

int cg_settings_all_or_none(const cg_comm_t *c, int have, const char *flag) {
  int any = have != 0, all = any;
  CG_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_MAX, c->world));
  CG_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_MIN, c->world));
  if (any == all) return 0;
  if (c->rank == 0)
    fprintf(stderr, "cogpu-dist: error: the ranks were started with different settings: %s "
            "%s, others without; every rank must run the same command line\n",
            have ? "rank 0 has" : "some ranks have", flag);
  return CG_EXIT_USAGE;
}

int cg_settings_resume(cg_config_t *cfg, cg_comm_t *c) {
  /* every rank resumes, or none: the ones that do wait for rank 0's settings below */
  if (cg_settings_all_or_none(c, cfg->resume[0], "--resume")) return CG_EXIT_USAGE;
  if (!cfg->resume[0]) return 0;
  char *settings = cg_malloc(CG_CKPT_SETTINGS_MAX, "checkpoint settings");
  int is_dir = 0;
  int64_t global = 0, opt_t = 0;
  char err[1024] = "";
  if (c->rank == 0)
    cfg->resume_found = find_settings(cfg, settings, &is_dir, &global, &opt_t, err, sizeof err);
  if (cg_comm_report_errors(c, cfg->resume_found < 0 ? err : NULL)) {
    free(settings);
    return CG_EXIT_USAGE;
  }
  CG_CHECK_MPI(MPI_Bcast(settings, CG_CKPT_SETTINGS_MAX, MPI_CHAR, 0, c->world));
  CG_CHECK_MPI(MPI_Bcast(&global, 1, MPI_INT64_T, 0, c->world));
  CG_CHECK_MPI(MPI_Bcast(&opt_t, 1, MPI_INT64_T, 0, c->world));
  CG_CHECK_MPI(MPI_Bcast(&is_dir, 1, MPI_INT, 0, c->world));
  CG_CHECK_MPI(MPI_Bcast(&cfg->resume_found, 1, MPI_INT, 0, c->world));
  FILE *out = c->rank == 0 ? stdout : NULL;
  int beside = 0;
  if (!cfg->checkpoint_dir[0]) { /* --resume DIR|FILE: go on writing beside it */
    char tmp[CG_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", cfg->resume);
    snprintf(cfg->checkpoint_dir, sizeof cfg->checkpoint_dir, "%s", is_dir ? tmp : dirname(tmp));
    /* but never into a folder --overwrite-checkpoints set aside: it stays as it was */
    snprintf(tmp, sizeof tmp, "%s", cfg->checkpoint_dir);
    if (!strncmp(basename(tmp), "previous-", 9)) {
      if (c->rank == 0)
        fprintf(stderr, "cogpu-dist: error: --resume %s: %s is a folder of an earlier run set "
                "aside by --overwrite-checkpoints; give --checkpoint-dir DIR for this run's "
                "checkpoints\n", cfg->resume, cfg->checkpoint_dir);
      free(settings);
      return CG_EXIT_USAGE;
    }
    beside = 1; /* said once the settings pass the checks, below */
  }
  int rc;
  if (settings[0]) {
    rc = cg_settings_apply(cfg, settings, out, err, sizeof err);
    if (!rc) keep_global_batch(cfg, settings, c->size, global, out);
  } else { /* nothing to take back: the command line alone, checked as a whole now */
    cfg->merged = 1;
    rc = cg_cli_check(cfg, err, sizeof err);
    /* a checkpoint without settings (format 3 and before) that trained ran AdamW; one of step
     * 0 (import) holds no optimizer state */
    if (!rc && cfg->resume_found && opt_t > 0 && cg_cfg_sgd(cfg)) {
      snprintf(err, sizeof err, "--optimizer: the checkpoint (written by a build that stored no "
               "settings) trained %lld steps with adamw; the command line has %s, and a resumed "
               "run cannot change it (leave the flag out, or start a new run%s)",
               (long long)opt_t, cfg->optimizer, optimizer_hint("optimizer"));
      rc = -1;
    }
  }
  free(settings);
  if (!rc && beside && out)
    fprintf(out, "resume: checkpoints go on to %s (no --checkpoint-dir given)\n",
            cfg->checkpoint_dir);
  /* cg_cli_check reads the --label-map file on each rank: a failure on one is every rank's */
  return cg_comm_report_errors(c, rc ? err : NULL) ? CG_EXIT_USAGE : 0;
}
