/* crc32.h: CRC-32 (IEEE 802.3, the polynomial of zlib, PNG and gzip), table-driven.
 *
 * Values equal zlib's crc32(): start from 0 and chain, cg_crc32(cg_crc32(0, a, n), b, m) ==
 * cg_crc32(0, ab, n + m). Used for the records of .cgds shards and for checkpoints. The tables
 * are built once on first use (pthread_once), so any thread may call these at any time. */
#ifndef CG_CRC32_H
#define CG_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* CRC of n bytes at p continuing from crc (0 to start). p may be NULL when n == 0. */
uint32_t cg_crc32(uint32_t crc, const void *p, size_t n);

#endif
