/* cgds.h: the packed .cgds shard — every sample of a dataset already fitted to one size,
 * stored raw so that training reads it through mmap with no decoding.
 *
 * File layout (all integers little-endian; offsets are bytes from the start of the file):
 *
 *   header, 64 bytes at offset 0
 *     0  char[4] magic        "CGDS"
 *     4  u32     version      1
 *     8  u32     header_bytes 64
 *    12  u32     flags        0 (no flags defined; a reader rejects unknown bits)
 *    16  u64     count        number of records
 *    24  u32     h            record height in pixels
 *    28  u32     w            record width in pixels
 *    32  u32     channels     3 (RGB8 image; one mask byte per pixel follows)
 *    36  u32     reserved     0
 *    40  u64     table_offset position of the record table (a multiple of 8)
 *    48  u64     file_bytes   length of the whole file (a short file is a truncated file)
 *    56  u32     index_crc    CRC32 of bytes [table_offset, file_bytes): the table and names
 *    60  u32     header_crc   CRC32 of bytes [0, 60)
 *   records, from offset 64, each starting at a multiple of 64
 *     h*w*3 bytes RGB8 (row-major, interleaved), then h*w bytes mask (0 or 1)
 *   record table at table_offset: count entries of 32 bytes, in index order
 *     0  u64 offset      where the record starts
 *     8  u64 length      h*w*4
 *    16  u32 crc         CRC32 of the record's length bytes
 *    20  u32 name_len    bytes of the name (no terminator), 1..4096
 *    24  u64 name_offset where the name starts (inside the names area)
 *   names, right after the table up to file_bytes: each record's sample name (the PNG file
 *   name without ".png"), which keys the validation split (source.h).
 *
 * CRC32 is zlib's (crc32.h). A writer produces records in index order, then the table and the
 * names, then the header; readers check the header, the table and the names at open, and a
 * record's CRC every time it is loaded. */
#ifndef CG_CGDS_H
#define CG_CGDS_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "source.h"

#define CG_CGDS_MAGIC "CGDS"
#define CG_CGDS_VERSION 1u
#define CG_CGDS_HEADER_BYTES 64
#define CG_CGDS_ENTRY_BYTES 32
#define CG_CGDS_ALIGN 64
#define CG_CGDS_MAX_NAME 4096

/* Opens a shard: maps it read-only and validates the header (magic, version, sizes against the
 * file's length, CRCs), every table entry (offset and length in range, names) at once; NULL with
 * "PATH: reason" in err otherwise. load() checks the record's CRC and fails with
 * "PATH: record N (NAME): CRC mismatch ..." or "... truncated ..." (file shortened since open). */
cg_source_t *cg_source_cgds(const char *path, char *err, size_t errlen);

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
} cg_cgds_stats_t;

/* Packs IMAGES/NAME.png + MASKS/NAME.png (the pairing, fitting and pixel-limit rules of
 * cg_source_png_dirs; max_pixels as --max-image-pixels) at size x size into out_path. Writes a temporary file in out_path's
 * directory, fsyncs it and renames it over out_path, then fsyncs the directory: a reader sees
 * the old file or the complete new one. On any failure the temporary is removed and out_path
 * is left as it was. cancel (optional) is polled between records (set it from a signal
 * handler). stats (optional) is filled on success. */
int cg_cgds_pack(const char *images_dir, const char *masks_dir, const char *out_path, int size,
                 int64_t max_pixels, volatile sig_atomic_t *cancel, cg_cgds_stats_t *stats,
                 char *err, size_t errlen);

/* The `pack` command: argv[0] = "pack", then --images DIR --masks DIR --out FILE.cgds
 * [--image-size N] [--max-image-pixels N] (defaults: train's) [--help]. Prints a one-line summary
 * on stdout, errors as "cogpu-dist pack: error: ..." on stderr. Returns the exit code: 0, 2 for
 * bad flags or bad input files, 1 when the output cannot be written, 130 when interrupted
 * (SIGINT/SIGTERM). Run it as one process: it does no MPI. */
int cg_pack_main(int argc, char **argv);

#endif
