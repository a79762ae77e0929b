/* pack.h: the `pack` command, image directories to a .cgds shard. The format and the writer
 * (cg_cgds_pack_opts) are the data module's (cgds.h); this is the command line around them,
 * declared here, in the module that defines it (pack.c), beside main.c's other commands. */
#ifndef CG_PACK_H
#define CG_PACK_H

/* argv[0] = "pack", then --images DIR --masks DIR --out FILE.cgds [--image-size N]
 * [--encoding raw|jpeg|png] [--quality Q] [--num-classes K] [--ignore-index I]
 * [--max-image-pixels N] (defaults: train's) [--help]. Prints a one-line summary on stdout,
 * errors as "cogpu-dist pack: error: ..." on stderr. Returns the exit code: 0, 2 for bad flags
 * or bad input files, 1 when the output cannot be written, 130 when interrupted
 * (SIGINT/SIGTERM). Run it as one process: it does no MPI. */
int cg_pack_main(int argc, char **argv);

#endif
