/* fuzz_tiff.c: the TIFF reader (src/data/tiff_io.c) every way a data set's TIFF is read; the
 * body and what it checks are fuzz_image.h's. */
#include "tiff_io.h"

#define FUZZ_NAME "fuzz_tiff"
#define FUZZ_FILE "image.tif"
#define READ_SIZE cg_tiff_read_size
#define READ_ROWS cg_tiff_read_rows
#include "fuzz_image.h"
