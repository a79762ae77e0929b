/* test_tboard.c: the TensorBoard event writer (tboard.h) without TensorBoard.
 *
 * CRC-32C against its check value (RFC 3720: "123456789" -> 0xE3069283); an event file of three
 * scalars framed as TFRecords: every record's length and masked CRCs check, the first event
 * holds file_version "brain.Event:2", the scalars hold their tag, step and value; a directory
 * that cannot be made fails with a message; a resumed run's file starts with the purge record
 * (SessionLog START at its step). (test_tensorboard.sh reads the files with
 * TensorBoard itself.) */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "le.h"
#include "tboard.h"
#include "testutil.h"

static uint32_t masked(uint32_t c) { return ((c >> 15) | (c << 17)) + 0xa282ead8u; }

int main(void) {
  CG_TEST_CHECK(cg_crc32c(0, "123456789", 9) == 0xE3069283u, "crc32c check value %08x",
                cg_crc32c(0, "123456789", 9));
  CG_TEST_CHECK(cg_crc32c(cg_crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u, "chained");
  char dir[] = "/tmp/cg_tboard_XXXXXX", err[512];
  if (!mkdtemp(dir)) return 1;
  char sub[64];
  snprintf(sub, sizeof sub, "%s/a/b", dir);
  cg_tb_t *t = cg_tb_open(sub, -1, err, sizeof err);
  CG_TEST_CHECK(t != NULL, "open: %s", err);
  if (!t) return cg_test_done("test_tboard");
  const char *tags[3] = {"train/loss", "val/miou", "val_class_iou/12"};
  const double vals[3] = {0.6931, 0.25, 1.0};
  const int64_t steps[3] = {5, 10, 123456789012LL};
  for (int i = 0; i < 3; i++)
    CG_TEST_CHECK(!cg_tb_scalar(t, tags[i], steps[i], vals[i], err, sizeof err), "%s", err);
  char path[512];
  snprintf(path, sizeof path, "%s", cg_tb_path(t));
  cg_tb_close(t);
  CG_TEST_CHECK(strstr(path, "/a/b/events.out.tfevents.") != NULL, "file name %s", path);
  FILE *f = fopen(path, "rb");
  unsigned char buf[4096];
  const size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
  if (f) fclose(f);
  size_t at = 0;
  int rec = 0, bad = 0;
  while (at + 12 <= n) {
    const uint64_t len = cg_le_get_u64(buf + at);
    bad += cg_le_get_u32(buf + at + 8) != masked(cg_crc32c(0, buf + at, 8));
    if (at + 12 + len + 4 > n) {
      bad++;
      break;
    }
    const unsigned char *d = buf + at + 12;
    bad += cg_le_get_u32(d + len) != masked(cg_crc32c(0, d, len));
    /* event: wall_time (tag 0x09) first in every record */
    bad += d[0] != 0x09;
    if (rec == 0) {
      bad += memmem(d, len, "brain.Event:2", 13) == NULL;
    } else {
      const char *tag = tags[rec - 1];
      bad += memmem(d, len, tag, strlen(tag)) == NULL;
      float v = (float)vals[rec - 1];
      unsigned char fv[5] = {0x15};
      memcpy(fv + 1, &v, 4); /* little-endian host */
      bad += memmem(d, len, fv, 5) == NULL;
      unsigned char sv[12] = {0x10}; /* step: varint after tag 0x10 */
      size_t k = 1;
      for (uint64_t s = (uint64_t)steps[rec - 1]; ; s >>= 7) {
        sv[k++] = (unsigned char)((s & 0x7f) | (s >> 7 ? 0x80 : 0));
        if (!(s >> 7)) break;
      }
      bad += memmem(d, len, sv, k) == NULL;
    }
    at += 12 + len + 4;
    rec++;
  }
  CG_TEST_CHECK(rec == 4 && at == n && bad == 0, "%d records, %zu of %zu bytes, %d bad", rec, at,
                n, bad);
  /* a directory that cannot be made */
  char blocked[96];
  snprintf(blocked, sizeof blocked, "%s/a/b/%s/x", dir, strrchr(path, '/') + 1);
  CG_TEST_CHECK(cg_tb_open(blocked, -1, err, sizeof err) == NULL &&
                    strstr(err, "cannot make"),
                "a file in the way: %s", err);
  /* a resumed run's file: the second record is Event{wall_time, step 20, session_log{status
   * START}}, the marker TensorBoard purges an earlier attempt's later points by */
  char sub2[64], path2[512];
  snprintf(sub2, sizeof sub2, "%s/r", dir);
  cg_tb_t *t2 = cg_tb_open(sub2, 20, err, sizeof err);
  CG_TEST_CHECK(t2 != NULL, "open with a purge step: %s", err);
  if (t2) {
    snprintf(path2, sizeof path2, "%s", cg_tb_path(t2));
    cg_tb_close(t2);
    FILE *g = fopen(path2, "rb");
    const size_t n2 = g ? fread(buf, 1, sizeof buf, g) : 0;
    if (g) fclose(g);
    const size_t second = 12 + cg_le_get_u64(buf) + 4; /* after the file-version record */
    const uint64_t len2 = n2 >= second + 12 ? cg_le_get_u64(buf + second) : 0;
    const unsigned char *d = buf + second + 12;
    static const unsigned char want[] = {0x10, 20, 0x3a, 2, 0x08, 1}; /* step, session_log */
    CG_TEST_CHECK(len2 == 9 + sizeof want && second + 12 + len2 + 4 == n2 && d[0] == 0x09 &&
                      !memcmp(d + 9, want, sizeof want) &&
                      cg_le_get_u32(d + len2) == masked(cg_crc32c(0, d, len2)),
                  "the purge record: %llu bytes of a %zu-byte file", (unsigned long long)len2,
                  n2);
    if (!cg_test_failures) remove(path2);
    rmdir(sub2);
  }
  if (!cg_test_failures) {
    remove(path);
    snprintf(sub, sizeof sub, "%s/a/b", dir);
    rmdir(sub);
    snprintf(sub, sizeof sub, "%s/a", dir);
    rmdir(sub);
    rmdir(dir);
  }
  printf("PASS crc32c; %d TFRecords framed and checked\n", rec);
  return cg_test_done("test_tboard");
}
