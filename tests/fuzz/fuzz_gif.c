/* fuzz_gif.c: the GIF reader (src/data/gif_io.c) every way a data set's GIF is read; the body
 * and what it checks are fuzz_image.h's. */
#include "gif_io.h"

#define FUZZ_NAME "fuzz_gif"
#define FUZZ_FILE "mask.gif"
#define READ_SIZE cg_gif_read_size
#define READ_ROWS cg_gif_read_rows
#include "fuzz_image.h"
