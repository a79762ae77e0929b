/* cli.h: the cogpu-dist command line (cli.c): argv to a cg_config_t (config.h), and --help.
 *
 * Every rank parses the same argv, so every rank reaches the same verdict on bad flags without
 * communicating; only rank 0 prints it. Checks that touch the file system (output paths) are
 * made on rank 0 and broadcast (run_setup.c, check_outputs). Nothing here prints unless asked
 * to (print_help). */
#ifndef CG_CLI_H
#define CG_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "config.h"
#include "opts.h"

/* Returns 0 when cfg is ready, 1 when help or the version was asked for (cfg->show; the caller
 * prints it on one rank and exits 0), or -1 with a one-line message in err naming the flag and
 * the allowed range (exit 2). Prints nothing. */
int cg_cli_parse(int argc, char **argv, cg_config_t *cfg, char *err, size_t errlen);
/* The single-process tools' usage error (pack, colors-to-ids): "cogpu-dist CMD: error: MESSAGE
 * (see cogpu-dist CMD --help)" on stderr; returns CG_EXIT_USAGE. */
int cg_cli_tool_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void cg_cli_defaults(cg_config_t *cfg);
void cg_cli_print_help(FILE *f, cg_command_t cmd);

/* For a command line that takes a command's options among its own (cogpu-bench overlap and
 * scaling take every train option): the rows of cmd, their values going to cfg. The set
 * points at a static table and at cfg, which the caller fills with cg_cli_defaults (and
 * cfg->cmd = cmd) before parsing, and checks with cg_cli_check after. */
cg_opts_set_t cg_cli_opts(cg_command_t cmd, cg_config_t *cfg);
/* The checks across options that follow parsing (cfg->cmd says which apply): 0, or -1 with a
 * one-line message in err naming the flag (the first check to fail, in a fixed order). It also
 * changes cfg, as a run keeps it, before any later check can fail:
 *   ignore_index         CG_IGNORE_DEFAULT resolved: 255 for --num-classes >= 2, else -1
 *   val_fraction         train with --val-data (data known: not a --resume to be merged): 0
 *   data, val_data       train: as cg_cli_data_path makes them (absolute paths)
 *   class_names          train: the comma list (a FILE's names read; none: "")
 *   class_names_file     train: that FILE, when the names came from one
 *   max_time_s           train: --max-time in seconds (0: none) */
int cg_cli_check(cg_config_t *cfg, char *err, size_t errlen);

/* --max-time's duration in seconds (> 0) into *out: N[s|m|h|d] (N may have a fraction), Slurm's
 * --time forms MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, or Lightning's DD:HH:MM:SS. 0, or
 * -1 when s is none of these. */
int cg_cli_parse_duration(const char *s, double *out);
/* The loss's class weights w[0..n) into cfg as a run keeps them: class_weight, nclass_weights
 * and class_weights, the text a checkpoint stores, in one spelling (each weight's shortest text
 * that reads back as the same float); n = 0 with a binary model: its --pos-weight, the one
 * weight. 0, or -1 with err when the text would be too long. */
int cg_cli_set_class_weights(cg_config_t *cfg, const float *w, int n, char *err, size_t errlen);
/* A --data / --val-data value as a run keeps it: a file or directory as an absolute path
 * (cg_path_abs), "synthetic" and "" as they are. in may be out. 0, or -1 (cg_path_abs). */
int cg_cli_data_path(const char *in, char *out, size_t outlen);

#endif
