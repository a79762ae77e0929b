/* cgds.c: the .cgds shard — reader source over mmap and the atomic writer (format in cgds.h).
 *
 * The reader trusts nothing it has not checked: at open the header, its CRC, the file length,
 * the table and names (and their CRC) and every entry's range; at load the record's CRC and
 * that the file has not been shortened under the mapping since (reading past the end of a
 * mapped file would be SIGBUS, not an error message). Offsets, CRCs and names are copied out
 * of the mapping at open, so later writes to the file cannot redirect a read.
 *
 * The writer decodes chunks of records in parallel (OpenMP) and writes them in index order, so
 * the file does not depend on the thread count. */
#include "cgds.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "crc32.h"
#include "le.h"
#include "log.h"


/* ---- reader ----------------------------------------------------------------------------- */

typedef struct {
  cg_source_t base;
  char *path;
  int fd;
  const uint8_t *map;
  size_t len;
  uint64_t rec_bytes;
  uint64_t *off;
  uint32_t *crc;
  char *names;     /* every name, NUL-terminated, back to back */
  size_t *name_at; /* start of name i in names */
  const char **name_ptr; /* base.names */
} cgds_source_t;

static int cgds_load(cg_source_t *s, int64_t index, uint8_t *rgb, uint8_t *mask, char *err,
                     size_t errlen) {
  cgds_source_t *cs = (cgds_source_t *)s;
  CG_ASSERT(index >= 0 && index < s->count);
  const char *name = cs->names + cs->name_at[index];
  const uint64_t off = cs->off[index], n = cs->rec_bytes;
  struct stat st;
  if (fstat(cs->fd, &st)) {
    snprintf(err, errlen, "%s: record %lld (%s): %s", cs->path, (long long)index, name,
             strerror(errno));
    return -1;
  }
  if ((uint64_t)st.st_size < off + n) {
    snprintf(err, errlen, "%s: record %lld (%s): truncated: the file is now %lld bytes, the record "
             "ends at %llu", cs->path, (long long)index, name, (long long)st.st_size,
             (unsigned long long)(off + n));
    return -1;
  }
  const uint8_t *rec = cs->map + off;
  uint32_t crc = cg_crc32(0, rec, n);
  if (crc != cs->crc[index]) {
    snprintf(err, errlen, "%s: record %lld (%s): CRC mismatch (stored %08x, computed %08x)",
             cs->path, (long long)index, name, cs->crc[index], crc);
    return -1;
  }
  const size_t px = (size_t)s->h * s->w;
  memcpy(rgb, rec, px * 3);
  memcpy(mask, rec + px * 3, px);
  for (size_t i = 0; i < px; i++)
    if (mask[i] > 1) {
      snprintf(err, errlen, "%s: record %lld (%s): mask value %d is not 0 or 1", cs->path,
               (long long)index, name, mask[i]);
      return -1;
    }
  return 0;
}

static void cgds_destroy(cg_source_t *s) {
  cgds_source_t *cs = (cgds_source_t *)s;
  if (cs->map) munmap((void *)cs->map, cs->len);
  if (cs->fd >= 0) close(cs->fd);
  free(cs->path);
  free(cs->off);
  free(cs->crc);
  free(cs->names);
  free(cs->name_at);
  free(cs->name_ptr);
  free(cs);
}

static const cg_source_ops_t cgds_ops = {"cgds", cgds_load, cgds_destroy};

#define OPEN_FAIL(...)                    \
  do {                                    \
    snprintf(err, errlen, __VA_ARGS__);   \
    goto fail;                            \
  } while (0)

cg_source_t *cg_source_cgds(const char *path, char *err, size_t errlen) {
  cgds_source_t *cs = cg_calloc(1, sizeof *cs, "cgds source");
  cs->base.ops = &cgds_ops;
  cs->fd = -1;
  cs->path = strdup(path);
  if (!cs->path) CG_FATAL("out of memory");
  cs->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (cs->fd < 0) OPEN_FAIL("%s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(cs->fd, &st)) OPEN_FAIL("%s: %s", path, strerror(errno));
  if (!S_ISREG(st.st_mode)) OPEN_FAIL("%s: not a regular file", path);
  const uint64_t size = (uint64_t)st.st_size;
  if (size == 0) OPEN_FAIL("%s: empty file, not a .cgds shard", path);
  cs->len = (size_t)size;
  void *m = mmap(NULL, cs->len, PROT_READ, MAP_PRIVATE, cs->fd, 0);
  if (m == MAP_FAILED) {
    cs->len = 0;
    OPEN_FAIL("%s: mmap failed: %s", path, strerror(errno));
  }
  cs->map = m;
  const uint8_t *h = cs->map;
  if (size < 4 || memcmp(h, CG_CGDS_MAGIC, 4) != 0)
    OPEN_FAIL("%s: not a .cgds shard (bad magic)", path);
  if (size < CG_CGDS_HEADER_BYTES)
    OPEN_FAIL("%s: truncated: %llu bytes, shorter than the %d-byte header", path,
              (unsigned long long)size, CG_CGDS_HEADER_BYTES);
  if (cg_crc32(0, h, 60) != cg_le_get_u32(h + 60)) OPEN_FAIL("%s: corrupt header (CRC mismatch)", path);
  const uint32_t version = cg_le_get_u32(h + 4), hbytes = cg_le_get_u32(h + 8), flags = cg_le_get_u32(h + 12);
  const uint64_t count = cg_le_get_u64(h + 16), table = cg_le_get_u64(h + 40), fbytes = cg_le_get_u64(h + 48);
  const uint32_t rh = cg_le_get_u32(h + 24), rw = cg_le_get_u32(h + 28), ch = cg_le_get_u32(h + 32);
  if (version != CG_CGDS_VERSION)
    OPEN_FAIL("%s: unsupported version %u (this build reads version %u)", path, version,
              CG_CGDS_VERSION);
  if (hbytes != CG_CGDS_HEADER_BYTES || flags != 0 || ch != 3)
    OPEN_FAIL("%s: unsupported header (header_bytes %u, flags 0x%x, channels %u)", path, hbytes,
              flags, ch);
  if (rh < 1 || rw < 1 || rh > 65535 || rw > 65535)
    OPEN_FAIL("%s: bad record size %ux%u", path, rw, rh);
  if (size < fbytes)
    OPEN_FAIL("%s: truncated: %llu bytes, the header says %llu", path, (unsigned long long)size,
              (unsigned long long)fbytes);
  if (size > fbytes)
    OPEN_FAIL("%s: %llu bytes, the header says %llu (trailing data)", path,
              (unsigned long long)size, (unsigned long long)fbytes);
  if (count < 1 || table < CG_CGDS_HEADER_BYTES || table % 8 || table > fbytes ||
      count > (fbytes - table) / CG_CGDS_ENTRY_BYTES)
    OPEN_FAIL("%s: corrupt header (count %llu, table at %llu, %llu bytes)", path,
              (unsigned long long)count, (unsigned long long)table, (unsigned long long)fbytes);
  if (cg_crc32(0, h + table, (size_t)(fbytes - table)) != cg_le_get_u32(h + 56))
    OPEN_FAIL("%s: corrupt record table or names (CRC mismatch)", path);
  cs->base.count = (int64_t)count;
  cs->base.h = (int)rh;
  cs->base.w = (int)rw;
  cs->rec_bytes = (uint64_t)rh * rw * 4;
  const uint64_t names_start = table + count * CG_CGDS_ENTRY_BYTES;
  cs->off = cg_malloc(sizeof(uint64_t) * count, "cgds offsets");
  cs->crc = cg_malloc(sizeof(uint32_t) * count, "cgds crcs");
  cs->name_at = cg_malloc(sizeof(size_t) * count, "cgds names");
  cs->names = cg_malloc((size_t)(fbytes - names_start) + count, "cgds names");
  size_t at = 0;
  for (uint64_t i = 0; i < count; i++) {
    const uint8_t *e = h + table + i * CG_CGDS_ENTRY_BYTES;
    const uint64_t off = cg_le_get_u64(e), len = cg_le_get_u64(e + 8), noff = cg_le_get_u64(e + 24);
    const uint32_t nlen = cg_le_get_u32(e + 20);
    if (len != cs->rec_bytes)
      OPEN_FAIL("%s: record %llu: length %llu, expected %llu for %ux%u", path,
                (unsigned long long)i, (unsigned long long)len,
                (unsigned long long)cs->rec_bytes, rw, rh);
    if (off < CG_CGDS_HEADER_BYTES || off > table || len > table - off)
      OPEN_FAIL("%s: record %llu: offset %llu out of range", path, (unsigned long long)i,
                (unsigned long long)off);
    /* names are back to back in index order: anything else is corruption */
    if (nlen < 1 || nlen > CG_CGDS_MAX_NAME || noff != names_start + (at - i) ||
        nlen > fbytes - noff || memchr(h + noff, 0, nlen))
      OPEN_FAIL("%s: record %llu: bad name entry", path, (unsigned long long)i);
    cs->off[i] = off;
    cs->crc[i] = cg_le_get_u32(e + 16);
    cs->name_at[i] = at;
    memcpy(cs->names + at, h + noff, nlen);
    at += nlen;
    cs->names[at++] = 0;
  }
  if (names_start + (at - count) != fbytes)
    OPEN_FAIL("%s: corrupt names area (%llu bytes after the last name)", path,
              (unsigned long long)(fbytes - (names_start + (at - count))));
  cs->name_ptr = cg_malloc(sizeof(char *) * count, "cgds names");
  for (uint64_t i = 0; i < count; i++) cs->name_ptr[i] = cs->names + cs->name_at[i];
  cs->base.names = cs->name_ptr;
  return &cs->base;
fail:
  cgds_destroy(&cs->base);
  return NULL;
}

/* ---- writer ----------------------------------------------------------------------------- */

#define PACK_CHUNK 64

typedef struct {
  uint64_t off;
  uint32_t crc;
  uint32_t name_len;
} entry_t;

static int write_all(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -1; }

int cg_cgds_pack(const char *images_dir, const char *masks_dir, const char *out_path, int size,
                 int64_t max_pixels, volatile sig_atomic_t *cancel, cg_cgds_stats_t *stats,
                 char *err, size_t errlen) {
  if (size < 1 || size > 65535) {
    snprintf(err, errlen, "image size %d out of range", size);
    return CG_CGDS_EINPUT;
  }
  struct stat st;
  if (stat(out_path, &st) == 0 && S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "%s: is a directory", out_path);
    return CG_CGDS_EINPUT;
  }
  const cg_source_opts_t so = {.size = size, .max_pixels = max_pixels};
  cg_source_t *src = cg_source_png_dirs(images_dir, masks_dir, &so, err, errlen);
  if (!src) return CG_CGDS_EINPUT;

  int rc = CG_CGDS_EIO;
  const int64_t n = src->count;
  const size_t px = (size_t)size * size, rec = px * 4;
  cg_afile_t *af = NULL; /* the temporary beside out_path, renamed over it at the end */
  FILE *f = NULL;
  entry_t *ent = cg_calloc((size_t)n, sizeof(entry_t), "pack entries");
  uint8_t *buf = cg_malloc(rec * PACK_CHUNK, "pack buffer");
  char(*errs)[512] = cg_malloc(sizeof(*errs) * PACK_CHUNK, "pack errors");
  int *bad = cg_malloc(sizeof(int) * PACK_CHUNK, "pack flags");
  uint8_t *index = NULL;

  af = cg_afile_open(out_path, err, errlen);
  if (!af) goto done;
  f = cg_afile_stream(af);

  uint8_t hdr[CG_CGDS_HEADER_BYTES];
  memset(hdr, 0, sizeof hdr);
  uint64_t pos = 0;
  static const uint8_t zeros[CG_CGDS_ALIGN];
  if (write_all(f, hdr, sizeof hdr)) goto write_fail;
  pos = sizeof hdr;
  uint64_t names_bytes = 0;
  for (int64_t c0 = 0; c0 < n; c0 += PACK_CHUNK) {
    if (cancel && *cancel) {
      snprintf(err, errlen, "%s: interrupted", out_path);
      rc = CG_CGDS_EINTR;
      goto done;
    }
    const int m = (int)(n - c0 < PACK_CHUNK ? n - c0 : PACK_CHUNK);
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < m; i++) {
      uint8_t *r = buf + (size_t)i * rec;
      bad[i] = cg_source_load(src, c0 + i, r, r + 3 * px, errs[i], sizeof errs[i]);
      if (!bad[i]) ent[c0 + i].crc = cg_crc32(0, r, rec);
    }
    for (int i = 0; i < m; i++) {
      if (bad[i]) {
        snprintf(err, errlen, "%s", errs[i]);
        rc = CG_CGDS_EINPUT;
        goto done;
      }
      const char *name = cg_source_name(src, c0 + i);
      size_t nl = strlen(name);
      if (nl < 1 || nl > CG_CGDS_MAX_NAME) {
        snprintf(err, errlen, "%s/%s.png: name longer than %d bytes", images_dir, name,
                 CG_CGDS_MAX_NAME);
        rc = CG_CGDS_EINPUT;
        goto done;
      }
      size_t pad = (size_t)((CG_CGDS_ALIGN - pos % CG_CGDS_ALIGN) % CG_CGDS_ALIGN);
      if (pad && write_all(f, zeros, pad)) goto write_fail;
      pos += pad;
      ent[c0 + i].off = pos;
      ent[c0 + i].name_len = (uint32_t)nl;
      names_bytes += nl;
      if (write_all(f, buf + (size_t)i * rec, rec)) goto write_fail;
      pos += rec;
    }
  }
  /* table + names, one block so that index_crc is one pass */
  size_t pad = (size_t)((8 - pos % 8) % 8);
  if (pad && write_all(f, zeros, pad)) goto write_fail;
  pos += pad;
  const uint64_t table = pos, names_start = table + (uint64_t)n * CG_CGDS_ENTRY_BYTES;
  const size_t iblock = (size_t)n * CG_CGDS_ENTRY_BYTES + (size_t)names_bytes;
  index = cg_calloc(iblock, 1, "pack index");
  uint64_t noff = names_start;
  for (int64_t i = 0; i < n; i++) {
    uint8_t *e = index + (size_t)i * CG_CGDS_ENTRY_BYTES;
    cg_le_put_u64(e, ent[i].off);
    cg_le_put_u64(e + 8, rec);
    cg_le_put_u32(e + 16, ent[i].crc);
    cg_le_put_u32(e + 20, ent[i].name_len);
    cg_le_put_u64(e + 24, noff);
    memcpy(index + (noff - table), cg_source_name(src, i), ent[i].name_len);
    noff += ent[i].name_len;
  }
  if (write_all(f, index, iblock)) goto write_fail;
  const uint64_t fbytes = table + iblock;
  memcpy(hdr, CG_CGDS_MAGIC, 4);
  cg_le_put_u32(hdr + 4, CG_CGDS_VERSION);
  cg_le_put_u32(hdr + 8, CG_CGDS_HEADER_BYTES);
  cg_le_put_u32(hdr + 12, 0);
  cg_le_put_u64(hdr + 16, (uint64_t)n);
  cg_le_put_u32(hdr + 24, (uint32_t)size);
  cg_le_put_u32(hdr + 28, (uint32_t)size);
  cg_le_put_u32(hdr + 32, 3);
  cg_le_put_u64(hdr + 40, table);
  cg_le_put_u64(hdr + 48, fbytes);
  cg_le_put_u32(hdr + 56, cg_crc32(0, index, iblock));
  cg_le_put_u32(hdr + 60, cg_crc32(0, hdr, 60));
  if (fseek(f, 0, SEEK_SET) || write_all(f, hdr, sizeof hdr)) goto write_fail;
  const int committed = cg_afile_commit(af, err, errlen);
  af = NULL; /* commit frees it, and removes the temporary on failure */
  if (committed) goto done;
  if (stats) {
    stats->records = n;
    stats->bytes = fbytes;
  }
  rc = CG_CGDS_OK;
  goto done;
write_fail:
  snprintf(err, errlen, "%s: write failed: %s (nothing was replaced)", out_path, strerror(errno));
  rc = CG_CGDS_EIO;
done:
  cg_afile_abort(af); /* removes the temporary of a pack that did not finish */
  free(ent);
  free(buf);
  free(errs);
  free(bad);
  free(index);
  cg_source_destroy(src);
  return rc;
}
