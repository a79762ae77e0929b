/* colors.h: the `colors-to-ids` command, masks that name their classes by RGB colours turned
 * into class-id masks (colors.c). */
#ifndef CG_COLORS_H
#define CG_COLORS_H

/* argv[0] = "colors-to-ids", then --colors FILE --in DIR --out DIR [--unknown ID]
 * [--tolerance T] [--rename A:B] [--gray] [--threads N] [--max-image-pixels N] [--help].
 * Prints a summary on stdout, errors as "cogpu-dist colors-to-ids: error: ..." on stderr.
 * Returns the exit code: 0, 2 for bad flags or bad input files (the others are converted), 1
 * when an output cannot be written. One process: no MPI. */
int cg_colors_main(int argc, char **argv);

#endif
