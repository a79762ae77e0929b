/* run_settings.h: the training-defining settings a checkpoint stores, and how `train --resume`
 * takes them back so that no flag needs retyping.
 *
 * The settings are the values of named train flags (cli.c's table), stored as one flat JSON
 * object {"model-base": "4", "lr": "0.001", ...} of the values as the command line would take
 * them (ckpt.h: the settings trailer). Each flag has a rule on resume:
 *   refused  the run would no longer be the same run (model shape, classes, ignore label, seed,
 *            data source and split, augmentation): a command-line value that differs from the
 *            checkpoint's is exit 2, naming the flag and both values;
 *   notice   allowed, with a printed notice that it differs (more --steps, another learning
 *            rate or schedule, batch, precision, backend, --val-every, --checkpoint-every...).
 * A stored flag not given on the command line takes the checkpoint's value. Flags not stored
 * (outputs, threads, workers, progress...) come from the command line as always.
 * README.md has the table. */
#ifndef CG_RUN_SETTINGS_H
#define CG_RUN_SETTINGS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "comm.h"
#include "config.h"

/* Writes cfg's stored settings as the JSON object into buf (len: CG_CKPT_SETTINGS_MAX).
 * 0, or -1 when they do not fit (buf then holds "{}"). */
int cg_settings_json(const cg_config_t *cfg, char *buf, size_t len);

/* Adds "key": "value" (both plain text, no quotes or backslashes) to the settings JSON object in
 * json (len bytes): 0, or -1 when it does not fit (json unchanged). For what a checkpoint stores
 * beside the flags (the training set's names: run.h's data_names; its images' shorter sides,
 * data_sides, for predict --resize auto). */
int cg_settings_add(char *json, size_t len, const char *key, const char *value);

/* A schedule's state, stored beside the settings so that a resume goes on counting (early
 * stopping's "early-stop-state", --lr-schedule plateau's "plateau-state"): "METRIC v0 v1 ...",
 * METRIC the figure it watches ("loss" or "iou"), the n values at full precision (whole counts
 * print as integers, as builds that wrote them with %lld did). cg_settings_add_state adds it to
 * json as cg_settings_add does (0, or -1 when it does not fit). cg_settings_state reads key's
 * state from the settings JSON: 1 with the n values in v when it watched metric; -1 when it
 * watched another figure, named in other (olen >= 8); 0 when absent or malformed. */
int cg_settings_add_state(char *json, size_t len, const char *key, const char *metric,
                          const double *v, int n);
int cg_settings_state(const char *json, const char *key, const char *metric, double *v, int n,
                      char *other, size_t olen);
/* A state's value that is a count or a step (a whole number 0 .. 2^53): a checkpoint's text is
 * untrusted, and a cast of a larger double to int64_t is undefined. */
static inline int cg_settings_count(double v) {
  return v >= 0 && v <= 9007199254740992.0 && v == (double)(int64_t)v;
}

/* Applies a checkpoint's settings JSON to cfg (see above), printing each notice to out (may be
 * NULL). 0, or -1 with a one-line message in err naming the flag (a refused difference, or a
 * malformed JSON). */
int cg_settings_apply(cg_config_t *cfg, const char *json, FILE *out, char *err, size_t errlen);

/* Collective: every rank has the flag (have) or none. 0, or CG_EXIT_USAGE after rank 0 said
 * which ranks have it: a flag some ranks lack would leave them out of its collectives. */
int cg_settings_all_or_none(const cg_comm_t *c, int have, const char *flag);

/* Collective, before the run is set up: with --resume, rank 0 finds the checkpoint (the newest
 * valid one, as the run will load), every rank applies its settings to cfg, and a --resume DIR
 * without --checkpoint-dir keeps writing checkpoints to DIR (FILE: to FILE's directory).
 * Returns 0 or CG_EXIT_USAGE after rank 0 printed why. A checkpoint without settings (version
 * <= 3) or none at all leaves cfg as the command line made it. */
int cg_settings_resume(cg_config_t *cfg, cg_comm_t *c);

#endif
