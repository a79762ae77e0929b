/* opts.h: table-driven command-line options, one engine for cogpu-dist (cli.c) and every
 * cogpu-bench sub-command (bench/).
 *
 * A table row names an option, its type, where its value goes (an offset into the caller's
 * struct), its range and its help. Parsing, range checks, error messages and --help all come
 * from the table, so a documented option cannot drift from what is parsed. The parser prints
 * nothing: an error comes back as one line naming the option (the caller prints it and exits
 * with code 2), so every MPI rank reaches the same verdict without communicating.
 *
 * Syntax: --name VALUE or --name=VALUE; a flag takes no value; -h or --help anywhere stops the
 * parse with "help". No short options, no positional arguments. A text option whose metavar
 * names a path (FILE, DIR, PREFIX or SRC as a word) refuses an empty value: "" is a mistake
 * (an unset shell variable), never "none". Given twice, the last value wins. */
#ifndef CG_OPTS_H
#define CG_OPTS_H

#include <stddef.h>
#include <stdio.h>

typedef enum {
  CG_OPT_INT,    /* int: a whole number in [min, max] */
  CG_OPT_I64,    /* int64_t, likewise */
  CG_OPT_U64,    /* uint64_t, likewise (no sign) */
  CG_OPT_DBL,    /* double in [min, max], or (min, max] with CG_OPT_MIN_EXCL */
  CG_OPT_BYTES,  /* size_t: a whole number with an optional suffix K, M, G (2^10, 2^20, 2^30) */
  CG_OPT_INTS,   /* cg_opt_ints_t: "1,2,4", each in [min, max], at most CG_OPT_INTS_MAX */
  CG_OPT_STR,    /* char[size], copied; choices "a|b|c", or NULL for free text */
  CG_OPT_PTR,    /* const char *, pointing into argv (which outlives it); choices as for STR */
  CG_OPT_OPTSTR, /* char[size] whose value may be left out (--resume [FILE]): the next argument
                    is taken only if it does not start with '-'; bare, it stores `choices` */
  CG_OPT_FLAG,   /* int set to 1; takes no value */
  CG_OPT_ONOFF,  /* int: on or 1 -> 1, off or 0 -> 0 */
} cg_opt_type_t;

/* cg_opt_t.flags */
#define CG_OPT_MIN_EXCL 1u /* the range excludes min */
#define CG_OPT_NODEF 2u    /* --help shows no default: it depends on something else (the help
                              text says what) */
#define CG_OPT_OUTPUT 4u   /* an output of a training run (a file or directory it writes, or
                              resumes from): refused by the benchmarks that run several */

#define CG_OPT_REQUIRED 8u /* the command cannot run without it: an empty value's message does
                              not suggest leaving it out (the caller checks it was given) */
#define CG_OPT_INTS_MAX 8
typedef struct {
  int n; /* 0 = not given (when the default is empty) */
  int v[CG_OPT_INTS_MAX];
} cg_opt_ints_t;

typedef struct {
  const char *name; /* without the leading "--" */
  cg_opt_type_t type;
  size_t off;       /* of the value in the struct the set's dst points to */
  size_t size;      /* of the value (STR, OPTSTR: the buffer) */
  double min, max;  /* numeric range, inclusive (see CG_OPT_MIN_EXCL) */
  unsigned flags;   /* CG_OPT_MIN_EXCL, CG_OPT_NODEF, CG_OPT_OUTPUT */
  const char *choices; /* STR, PTR: "a|b|c" or NULL; OPTSTR: the value given bare */
  unsigned cmds;    /* the sets that take it (cg_opts_set_t.cmds); 0 = every set */
  const char *metavar; /* "" for a flag */
  const char *help;
} cg_opt_t;

/* off and size of a field, for a row: CG_OPT_FIELD(cg_config_t, batch) */
#define CG_OPT_FIELD(type, field) offsetof(type, field), sizeof(((type *)0)->field)

/* Rows by kind, in cg_opt_t's order: `field` is a CG_OPT_FIELD, `cmds` as cg_opt_t.cmds (0 =
 * every set). A row that fits none (CG_OPT_NODEF) is written out in full. */
#define CG_OPT_ROW_NUM(T, name, field, lo, hi, cmds, meta, help)                              \
  { name, CG_OPT_##T, field, lo, hi, 0, NULL, cmds, meta, help }
/* The range (lo, hi]: lo itself is refused. */
#define CG_OPT_ROW_NUM_GT(T, name, field, lo, hi, cmds, meta, help)                           \
  { name, CG_OPT_##T, field, lo, hi, CG_OPT_MIN_EXCL, NULL, cmds, meta, help }
/* T = STR or PTR (choices "a|b|c" or NULL), or OPTSTR (choices: the value given bare). */
#define CG_OPT_ROW_TEXT(T, name, field, choices, cmds, meta, help)                            \
  { name, CG_OPT_##T, field, 0, 0, 0, choices, cmds, meta, help }
/* A path a training run writes (CG_OPT_OUTPUT): T = STR or PTR. */
#define CG_OPT_ROW_OUT(T, name, field, cmds, meta, help)                                      \
  { name, CG_OPT_##T, field, 0, 0, CG_OPT_OUTPUT, NULL, cmds, meta, help }
#define CG_OPT_ROW_FLAG(name, field, cmds, help)                                              \
  { name, CG_OPT_FLAG, field, 0, 1, 0, NULL, cmds, "", help }
#define CG_OPT_ROW_ONOFF(name, field, cmds, help)                                             \
  { name, CG_OPT_ONOFF, field, 0, 1, 0, NULL, cmds, "on|off", help }

/* The rows of one table a command takes, and the struct their values go to (for --help: the
 * struct holding the defaults). The set does not own anything. */
typedef struct {
  const cg_opt_t *opts;
  size_t n;
  unsigned cmds; /* rows with (cmds & row.cmds) != 0, and rows with cmds 0 */
  void *dst;
  unsigned hide; /* rows with (flags & hide) != 0 are parsed but left out of cg_opts_print */
} cg_opts_set_t;

/* Parses argv[0..argc) (the options only: the caller skips the program and command names)
 * into the sets' structs, which hold the defaults on entry; a name is looked up in the sets in
 * order. cmd ("train") and prog ("cogpu-dist train") name the command in messages. Returns 0,
 * 1 when -h or --help was met (parsing stops there), or -1 with a one-line message in err
 * naming the option and, for a bad value, the allowed values. err is "" unless -1. */
int cg_opts_parse(const cg_opts_set_t *sets, int nsets, int argc, char **argv, const char *cmd,
                  const char *prog, char *err, size_t errlen);

/* Whether --name is among argv[0..argc) (as cg_opts_parse walks them: a value is not taken for
 * an option). For the checks that depend on an option being given, not on its value. */
int cg_opts_given(const cg_opts_set_t *set, int argc, char *const *argv, const char *name);

/* Writes title (when not NULL) and "  --name METAVAR   help [default]" per row of the set, the
 * default read from set->dst, the help wrapped (at a terminal's width, else at 100 columns) and
 * continued under its first word. */
void cg_opts_print(FILE *f, const char *title, const cg_opts_set_t *set);
/* The closing line of a --help: "  -h, --help   this help". */
void cg_opts_print_help(FILE *f);

#endif
