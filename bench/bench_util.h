/* bench_util.h: what every benchmark shares — its command line, the JSON line, the median.
 *
 * A benchmark is a cg_bench_t (bench.h lists them): a name, its help, a table of options
 * (src/base/opts.h, the engine cogpu-dist's own command line uses) over a struct of its own, an
 * optional check across options, and a run function. The driver (bench_main.c) parses,
 * answers --help, reports a bad option (one line naming the benchmark and the option, exit 2)
 * and only then runs it: every option is in --help, range-checked, and fails the same way. */
#ifndef CG_BENCH_UTIL_H
#define CG_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "comm.h"   // cg_comm_t
#include "config.h" // cg_config_t: the training run of overlap and scaling
#include "opts.h"   // cg_opt_t, CG_OPT_*: the option rows

typedef struct cg_bench {
  const char *name;    /* the sub-command: cogpu-bench NAME */
  const char *summary; /* for cogpu-bench --help; one line per '\n' */
  const char *about;   /* for NAME --help, after the usage line: what it measures and how */
  const cg_opt_t *opts; /* its options (rows with cmds 0) */
  size_t nopts;
  size_t size;           /* of its options struct, which the rows' offsets point into */
  const void *defaults;  /* that struct, holding every default */
  /* > 0: the struct holds a cg_config_t at this offset (never first), filled from every
   * `cogpu-dist train` option as the training run of the benchmark, except train's outputs
   * (CG_OPT_OUTPUT rows: refused, a benchmark runs several trainings); 0: none. */
  size_t train_off;
  /* NULL, or sets the defaults that depend on which options were given (argv: the command
   * line after "cogpu-bench", argv[0] = NAME); called after parsing, before check. */
  void (*given)(void *opts, int argc, char **argv);
  /* NULL, or the checks across options after parsing; may complete derived fields of the
   * struct. 0, or -1 with a one-line message in err naming the option. */
  int (*check)(void *opts, char *err, size_t errlen);
  /* Runs the benchmark with the parsed options on every rank; returns the exit code. */
  int (*run)(const void *opts, cg_comm_t *c);
} cg_bench_t;

/* The option fields of a cg_bench_t: the table, the struct type and its defaults. */
#define CG_BENCH_OPTIONS(table, type, defaults_)                                             \
  .opts = (table), .nopts = sizeof(table) / sizeof((table)[0]), .size = sizeof(type),        \
  .defaults = &(defaults_)

/* Every benchmark that writes a JSON line takes this row (its struct has `json_out`). */
#define CG_BENCH_OPT_JSON_OUT(type)                                                          \
  CG_OPT_ROW_TEXT(PTR, "json-out", CG_OPT_FIELD(type, json_out), NULL, 0, "FILE",            \
                  "also write the JSON line to FILE (replaced atomically)")

/* Parses argv (argv[0] = the benchmark's name) into opts (b->size bytes, set to the defaults
 * here), then the checks. Returns 0 (run), 1 (--help asked for) or -1 with one line in err
 * naming the option. Prints nothing and touches nothing but opts. */
int cg_bench_parse(const cg_bench_t *b, int argc, char **argv, void *opts, char *err,
                   size_t errlen);
/* NAME --help: usage, about, every option with its default (and the training options). */
void cg_bench_print_help(FILE *f, const cg_bench_t *b);

/* overlap and scaling (their `given`): a training run long enough for a steady window unless
 * the command line says otherwise: `steps` steps, the performance line twice, no validation
 * (unless --val-samples, or with val_every_too also --val-every, was given), no progress bar.
 * An option counts as given when an argument starts with its name. */
void cg_bench_train_defaults(cg_config_t *cfg, int argc, char **argv, int64_t steps,
                             int val_every_too);

/* Prints the line "JSON {json}" and writes {json} to path (if not NULL), atomically; returns 0,
 * or 1 after a message. */
int cg_bench_write_json(const char *path, const char *json);
/* Median of n doubles (sorts a copy). */
double cg_bench_median(const double *v, int n);

/* A figure for the JSON line: "%.4f" of v, or "null" when v < 0 (not measured: a figure that
 * cannot be measured is absent, never invented). Returns buf. */
const char *cg_bench_json_fig(char buf[32], double v);

#endif
