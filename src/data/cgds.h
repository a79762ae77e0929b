/* cgds.h: the packed .cgds shard — every sample of a dataset already fitted to one size (or, in
 * version 5, every image whole, scaled to one shorter side), stored
 * raw (training reads it through mmap with no decoding) or encoded (JPEG or PNG images, PNG
 * masks: a fraction of the size, decoded by the loader's helpers).
 *
 * File layout, version 3 (all integers little-endian; offsets are bytes from the start of the
 * file); versions 1 (before issue 13) and 2 (before 2026-12-05) are the same with the
 * differences marked [v1], [v2]:
 *
 *   header, 64 bytes at offset 0
 *     0  char[4] magic        "CGDS"
 *     4  u32     version      3 [v1: 1, v2: 2; 4: a label map; 5: whole images]
 *     8  u32     header_bytes 64
 *    12  u32     flags        0 (no flags defined; a reader rejects unknown bits)
 *    16  u64     count        number of records
 *    24  u32     h            record height in pixels
 *    28  u32     w            record width in pixels
 *    32  u32     channels     3 (RGB8 image; one mask byte per pixel follows)
 *    36  u32     encoding     what `pack --encoding` asked for: 0 raw, 1 jpeg, 2 png (each record
 *                             says how it is stored; readers use the record's) [v1: 0]
 *    40  u64     table_offset position of the record table (a multiple of 8)
 *    48  u64     file_bytes   length of the whole file (a short file is a truncated file)
 *    56  u32     index_crc    CRC32 of bytes [table_offset, file_bytes): the table and names
 *    60  u32     header_crc   CRC32 of bytes [0, 60)
 *   records, from offset 64, each starting at a multiple of 64: the image part, then the mask
 *   part right after it
 *     image part: raw h*w*3 bytes RGB8 (row-major, interleaved), or a JPEG or PNG file of
 *                 exactly h x w pixels
 *     mask part:  raw h*w bytes, or an 8-bit gray PNG file of h x w holding the same bytes:
 *                 0/1, or class ids and the ignore label (pack --num-classes K)
 *     [v1: always raw]
 *   record table at table_offset: count entries of 48 bytes [v1: 32], in index order
 *     0  u64 offset      where the record starts
 *     8  u64 length      bytes of the record (image part + mask part) [v1: h*w*4]
 *    16  u32 crc         CRC32 of the record's length bytes
 *    20  u32 name_len    bytes of the name (no terminator), 1..4096
 *    24  u64 name_offset where the name starts (inside the names area)
 *    32  u32 image_bytes bytes of the image part (raw: h*w*3)            [v1: absent]
 *    36  u8  image_enc   0 raw, 1 JPEG, 2 PNG                           [v1: absent]
 *    37  u8  mask_enc    0 raw, 2 PNG                                   [v1: absent]
 *    38  u16 reserved    0; 40 u64 reserved 0                           [v1: absent]
 *        version 5: 40 u32 rec_h, 44 u32 rec_w: the record's size, its shorter side the
 *        header's h (= w): the whole image scaled to that side (pack --store whole); its parts
 *        hold rec_h x rec_w pixels where the above says h x w. Training takes its crop windows
 *        over the whole record, and its fitted (validation) square from the record's centre.
 *   names, right after the table up to the labels block [v1, v2: up to file_bytes]: each
 *   record's sample name (the PNG file name without ".png"), which keys the validation split
 *   (source.h).
 *   labels block, the last 784 bytes of the file (v4, v5: 1296) [v1, v2: absent]: what the masks
 *   hold
 *     0  char[4] magic        "CGLB"
 *     4  u32     nclass       1 (binary: 0/1) or K >= 2 (class ids 0..K-1), as pack --num-classes
 *     8  i32     ignore       the ignore label (>= max(K, 2), <= 255), or -1: none
 *    12  u32     npal         0, or the entries of the masks' palette (palette PNG masks), <= 256
 *    16  u8[768] palette      npal RGB triples, then zeros
 *   784  char[512] label map   [v4 only: the block is then 1296 bytes] the --label-map pack
 *                              applied (labelmap.h's table: two hex digits per stored value,
 *                              "--" for a value left out); pack writes version 5 with
 *                              --store whole, else version 4 only with a map, version 3 otherwise
 *   Training reads a version-3, 4 or 5 shard only with the same --num-classes and --ignore-index
 *   (and the same --label-map, which a run on the shard takes from it), and keeps its palette
 *   in the checkpoint for predict, as it does for a directory.
 *
 * CRC32 is zlib's (crc32.h). A writer produces records in index order, then the table and the
 * names, then the header; readers check the header, the table and the names at open, and a
 * record's CRC every time it is loaded, then decode its encoded parts (jpeg_io.h, png_io.h)
 * with the size fixed by the header: a part that does not decode to exactly h x w is a bad
 * record, like a CRC mismatch. Raw records of versions 2 and 3 sit where version 1 put them. */
#ifndef CG_CGDS_H
#define CG_CGDS_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "source.h"

#define CG_CGDS_MAGIC "CGDS"
#define CG_CGDS_VERSION 5u
#define CG_CGDS_LABELS_MAGIC "CGLB"
#define CG_CGDS_LABELS_BYTES 784 /* version 3's labels block */
#define CG_CGDS_LABELS_BYTES_V4 (784 + 512) /* version 4's: the label map besides */
#define CG_CGDS_HEADER_BYTES 64
#define CG_CGDS_ENTRY_BYTES 48    /* versions 2 and 3 */
#define CG_CGDS_ENTRY_BYTES_V1 32
#define CG_CGDS_ALIGN 64
#define CG_CGDS_MAX_NAME 4096

/* Opens a shard: maps it read-only and validates the header (magic, version, sizes against the
 * file's length, CRCs), every table entry (offset and length in range, names) at once; NULL with
 * "PATH: reason" in err otherwise. load() checks the record's CRC and fails with
 * "PATH: record N (NAME): CRC mismatch ..." or "... truncated ..." (file shortened since open). */
cg_source_t *cg_source_cgds(const char *path, char *err, size_t errlen);
/* The stored size of record index of a shard (version 5: its own; else the header's): 0, or -1
 * when s is no shard or index is out of range. */
int cg_cgds_record_size(const cg_source_t *s, int64_t index, int *h, int *w);
/* The mask values a shard's records may hold (issue 13): class ids 0..nclass-1 and the ignore
 * label (>= nclass; -1 none). Default (not called): 0 and 1. A record holding another value is
 * a bad sample: "PATH: record N (NAME): mask value V is not a class id of --num-classes K ...".
 * s must come from cg_source_cgds. */
void cg_cgds_set_labels(cg_source_t *s, int nclass, int ignore);
/* What a version-3 shard's labels block says its masks hold: 1 with *nclass (1: binary) and
 * *ignore (-1: none), or 0 for an older shard, which does not say. The palette, if any, is the
 * source's npal / palette. */
int cg_cgds_labels(const cg_source_t *s, int *nclass, int *ignore);
/* The --label-map pack applied to a version-4 shard's masks: 1 with *table (its
 * cg_labelmap_table text, owned by s), or 0 when the shard's masks are the files' values (no
 * map, or an older shard). */
int cg_cgds_label_map(const cg_source_t *s, const char **table);

/* Results of cg_cgds_pack. */
enum {
  CG_CGDS_OK = 0,
  CG_CGDS_EINPUT = -1, /* bad input: a missing directory, an unpaired or undecodable PNG */
  CG_CGDS_EIO = -2,    /* the output could not be written (permissions, disk full) */
  CG_CGDS_EINTR = -3   /* *cancel became non-zero */
};

typedef struct {
  int64_t records;
  uint64_t bytes; /* size of the written file */
  uint64_t nclass_px, nignore_px; /* mask pixels of a class other than 0 (binary: > 0), and of
                                     the ignore label (the ignore label is stored as it is) */
  int64_t not_square;             /* records whose image is not square */
  int64_t scaled;                 /* records whose image's shorter side is not the size */
  int64_t squeezed;               /* whole records squeezed: an image longer than
                                     CG_FIT_WHOLE_MAX_ASPECT times its shorter side, or a side
                                     past CG_PNG_MAX_SIDE (cg_fit_whole_size) */
} cg_cgds_stats_t;

/* Record encodings (the header's `encoding`, the entries' image_enc / mask_enc). */
typedef enum { CG_CGDS_RAW = 0, CG_CGDS_JPEG = 1, CG_CGDS_PNG = 2 } cg_cgds_enc_t;

typedef struct {
  int size;           /* side of the stored samples (whole: their shorter side) */
  int64_t max_pixels; /* as --max-image-pixels */
  cg_cgds_enc_t encoding; /* raw: as version 1; jpeg: images re-encoded at `quality` (or the
                             input's own bytes when it is a JPEG of exactly size x size), masks
                             PNG; png: images and masks PNG (lossless) */
  int quality;        /* JPEG quality 1..100 (0: 90) */
  int version;        /* 0 or 3: the current format; 1, 2: those versions (old-shard tests;
                         1 is raw only) */
  int nclass, ignore; /* masks (cg_source_opts_t): 0 or 1 binary; K >= 2 class ids; the
                         ignore label (>= nclass; else none), stored as it is */
  const cg_labelmap_t *label_map; /* --label-map: the masks' values mapped before they are
                                     stored, and its table kept (version 4; NULL: as they are,
                                     version 3) */
  int whole;          /* store each image whole, its shorter side scaled to size (version 5),
                         instead of its fitted size x size square */
  cg_exif_t exif;     /* a JPEG image's EXIF orientation applied before it is stored or not
                         (--exif-orientation; a record is read as stored) */
} cg_cgds_pack_opts_t;

/* cg_cgds_pack with the options above; masks_dir NULL: images_dir names a list of pairs
 * instead of a directory (cg_source_png_list, source.h). */
int cg_cgds_pack_opts(const char *images_dir, const char *masks_dir, const char *out_path,
                      const cg_cgds_pack_opts_t *o, volatile sig_atomic_t *cancel,
                      cg_cgds_stats_t *stats, char *err, size_t errlen);

/* Packs IMAGES/NAME.png + MASKS/NAME.png (the pairing, fitting and pixel-limit rules of
 * cg_source_png_dirs; max_pixels as --max-image-pixels) at size x size into out_path. Writes a
 * temporary file in out_path's directory, fsyncs it and renames it over out_path, then fsyncs
 * the directory: a reader sees the old file or the complete new one. On any failure the
 * temporary is removed and out_path is left as it was. Records are fitted and encoded in
 * parallel, in chunks of 64 (fewer for large sizes: a chunk's samples take at most 256 MiB, or
 * one sample);
 * cancel (optional; set it from a signal handler) is polled before each record, so a pack stops
 * within one record per thread and commits nothing. stats (optional) is filled on success. Raw
 * encoding, the current version. */
int cg_cgds_pack(const char *images_dir, const char *masks_dir, const char *out_path, int size,
                 int64_t max_pixels, volatile sig_atomic_t *cancel, cg_cgds_stats_t *stats,
                 char *err, size_t errlen);

/* The `pack` command around these, cg_pack_main, is src/run/pack.h's. */

#endif
