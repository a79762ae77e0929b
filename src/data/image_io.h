/* image_io.h: one entry point for the image formats the trainer reads (PNG, JPEG, GIF, TIFF, BMP),
 * chosen by the file's first bytes, not its name: a JPEG named x.png is read as a JPEG, and the
 * reverse. A file that starts like none of them fails with "PATH: not a PNG, JPEG, GIF, TIFF or
 * BMP file (starts with 'RIFF': a WebP?)" (or "(empty: 0 bytes)"); one cut inside a signature goes
 * to that format's reader, which says so. Images come out as RGB8 (png_io.h, jpeg_io.h, gif_io.h,
 * tiff_io.h, bmp_io.h); masks as png_io.h's cg_png_as_t says, JPEG masks binary only. Return
 * values, ownership and thread-safety as in png_io.h. */
#ifndef CG_IMAGE_IO_H
#define CG_IMAGE_IO_H

#include <stddef.h>
#include <stdint.h>

#include "jpeg_io.h" /* cg_exif_t */
#include "png_io.h"

/* 1 when the file starts like a JPEG, 0 otherwise (also when it cannot be read). */
int cg_image_is_jpeg(const char *path);

/* The message for a mask of mh x mw whose image (path) is h x w as exif read it: "mask is WxH
 * but its image PATH is WxH", with the likely cause when the sides are swapped on a JPEG (its
 * EXIF orientation, named, applied by a viewer and the tool that drew the mask but not here, or
 * applied here and not by the mask's maker) and the --exif-orientation that fits. train, pack and
 * predict --masks say the same. */
void cg_image_size_mismatch(const char *image, cg_exif_t exif, int h, int w, int mh, int mw,
                            char *err, size_t errlen);

/* The extensions of image and mask files in a directory, in any letter case, NULL-terminated;
 * and those after .png as text, for messages ("NAME.png (or " CG_IMAGE_EXTS_ALT ")"). */
extern const char *const cg_image_exts[];
#define CG_IMAGE_EXTS_ALT ".jpg, .jpeg, .gif, .tif, .tiff, .bmp"

/* 1 when NAME ends in .png, .jpg, .jpeg, .gif, .tif or .tiff in any letter case (and does not
 * start with '.');
 * *stem (optional) gets the length of NAME without the extension. */
int cg_image_has_ext(const char *name, size_t *stem);

/* NAME without its directory and its extension into out (len bytes; longer stems are cut). */
void cg_image_stem(const char *name, char *out, size_t len);
/* qsort's order of char * paths by their stems, so that two of one stem are neighbours. */
int cg_image_cmp_stem(const void *a, const void *b);

/* The names (not paths) of dir's image files (cg_image_has_ext's names), in readdir's order,
 * into *out (*n malloc'd names in a malloc'd array): regular files or links to them. A FIFO,
 * directory or device so named is left out (a read of a FIFO blocks forever); a link to nothing
 * usable is an error naming it (not a missing file later). 0, or -1 with err ("DIR: cannot open
 * directory: ...", "DIR: cannot read directory: ...", "DIR/NAME: a symbolic link to nothing
 * usable (...)") and nothing returned. The one rule of train's, predict's and colors-to-ids'
 * listings. */
int cg_image_list_names(const char *dir, char ***out, size_t *n, char *err, size_t errlen);

/* The image files of dir (dir/NAME, cg_image_list_names's), sorted by name, into *out
 * (*n malloc'd paths in a malloc'd array). Two of one stem (a.png, a.JPG) are an error naming
 * both: with clash (what is made of a stem, e.g. "predicted to"), "FLAG: 'a.JPG' and 'a.png'
 * would both be CLASH a.png"; without, "are masks of one image (which one?)". flag names dir in
 * messages. 0, or -1 with err and nothing returned. */
int cg_image_list_dir(const char *flag, const char *dir, const char *clash, char ***out, int *n,
                      char *err, size_t errlen);

/* Width and height from the header (PNG IHDR, JPEG SOF, GIF screen, TIFF first page, BMP) within
 * the pixel limit, a JPEG's as exif reads it (cg_exif_t: turned or as stored); *orient
 * (optional) a JPEG's EXIF orientation (1..8; 0 for none and for the other formats). */
int cg_image_read_size(const char *path, int64_t max_pixels, cg_exif_t exif, int *h, int *w,
                       int *orient, char *err, size_t errlen);

/* What an EXIF orientation o (1..8) asks a viewer to do to the stored pixels, for messages
 * ("turned 90 degrees clockwise"); "" for 0 and 1. */
const char *cg_image_orientation_text(int o);

/* The whole image at full size as RGB8 (a JPEG as exif reads it): *rgb (h*w*3) is the caller's
 * to free. */
int cg_image_read_rgb(const char *path, int64_t max_pixels, cg_exif_t exif, uint8_t **rgb,
                      int *h, int *w, char *err, size_t errlen);

/* Row by row as RGB8 into sink (cg_png_read_rows / cg_jpeg_read_rows); min_side > 0 lets a
 * JPEG decode at a reduced DCT scale keeping both sides >= min_side (PNG ignores it), and exif
 * says whether its orientation turns it. sink->begin gets the decoded size; before it,
 * *full_h, *full_w (optional) get the file's (turned) and *scale (optional) the M of the scale
 * M/8 it is decoded at (cg_jpeg_read_t.scale; 8: full size). */
int cg_image_read_rows(const char *path, int64_t max_pixels, int min_side, cg_exif_t exif,
                       const cg_png_sink_t *sink, int *full_h, int *full_w, int *scale,
                       char *err, size_t errlen);

/* A mask row by row into sink, read as `as` says (CG_PNG_AS_MASK or CG_PNG_AS_LABEL): a PNG,
 * GIF, TIFF or BMP by its reader (their rules on the stored values: png_io.h, gif_io.h,
 * tiff_io.h, bmp_io.h);
 * a JPEG only as a binary mask (AS_MASK: rows of 0/1), foreground where its luma
 * (19595 R + 38470 G + 7471 B) / 65536, rounded, is >= 128: Pillow's arithmetic, so the mask
 * is Image.open(p).convert("L") >= 128 exactly (tests/test_pillow.c); lossy compression blurs
 * 0 and 255, so "> 0" would mark its noise. As labels a JPEG is
 * refused ("a JPEG mask: ... class ids need a PNG, GIF, TIFF or BMP"); a file of another format
 * fails as above. */
int cg_image_read_mask_rows(const char *path, int64_t max_pixels, cg_png_as_t as,
                            const cg_png_sink_t *sink, char *err, size_t errlen);
/* The same file's size from its header alone, with the same refusals (a PNG:
 * cg_png_read_size_as). */
int cg_image_read_mask_size(const char *path, int64_t max_pixels, cg_png_as_t as, int *h, int *w,
                            char *err, size_t errlen);

#endif
