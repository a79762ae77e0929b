/* fuzz_bmp.c: the BMP reader (src/data/bmp_io.c) every way a data set's BMP is read; the body
 * and what it checks are fuzz_image.h's. */
#include "bmp_io.h"

#define FUZZ_NAME "fuzz_bmp"
#define FUZZ_FILE "mask.bmp"
#define READ_SIZE cg_bmp_read_size
#define READ_ROWS cg_bmp_read_rows
#include "fuzz_image.h"
