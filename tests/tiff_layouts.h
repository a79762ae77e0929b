/* tiff_layouts.h: small TIFF files of the layouts Pillow does not write, made with libtiff for
 * test_pillow.c (answered by Pillow, compared with our reader) and as fuzz seeds
 * (fuzz_seedgen tiff): tiled gray (8 and 16 bits) and RGB, planar-separate RGB, MinIsWhite 8
 * and 16 bits, big-endian 16-bit RGB, 4-bit palette and gray, gray with an alpha sample, signed
 * 16-bit.
 * Link TIFF::TIFF where COGPU_HAVE_TIFF is set. */
#ifndef CG_TIFF_LAYOUTS_H
#define CG_TIFF_LAYOUTS_H

/* Writes them into dir (created if missing): 0, or -1 with a message on stderr. Without
 * libtiff: 0 and no files. */
int cg_test_tiff_layouts(const char *dir);

#endif
