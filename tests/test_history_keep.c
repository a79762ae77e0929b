/* test_history_keep.c: what a resumed run keeps of an existing history (src/run/history.c),
 * as a unit test so that the sanitizer build runs it (test_history.sh covers the whole run but
 * not under UBSan). The JSONL file holds the records of steps 8 and 16, lines no run writes (a
 * step no integer holds, a negative step, a fractional one, not JSON), a record beyond the
 * checkpoint and a torn last line; the CSV twin the same. Keeping up to step 20 must leave
 * exactly the records of 8 and 16, in order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "history.h"
#include "testutil.h"

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  static char buf[4096];
  const size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  return buf;
}

static void put(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  CG_TEST_CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0, "write %s", path);
}

int main(void) {
  char dir[] = "/tmp/cg-history-XXXXXX";
  CG_TEST_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char jl[64], csv[64], err[512];
  snprintf(jl, sizeof jl, "%s/h.jsonl", dir);
  snprintf(csv, sizeof csv, "%s/h.csv", dir);
  put(jl, "{\"step\": 8, \"wall_s\": 1.5}\n"
          "{\"step\": 1e300}\n"
          "{\"step\": -4}\n"
          "{\"step\": 9.5}\n"
          "not json\n"
          "{\"step\": 16, \"wall_s\": 3.25}\n"
          "{\"step\": 28, \"wall_s\": 9}\n"
          "{\"step\": 3");
  put(csv, "step,epoch\n8,1\n99999999999999999999999,2\n-4,0\n16,2\n28,3.5\n3");
  cg_history_t *h = cg_history_create(jl, csv, 1, 20, err, sizeof err);
  CG_TEST_CHECK(h != NULL, "create: %s", err);
  if (h) {
    CG_TEST_CHECK(cg_history_wall_offset(h) == 3.25, "wall offset %g, want 3.25 (step 16's)",
                  cg_history_wall_offset(h));
    cg_history_destroy(h);
  }
  const char *want_j = "{\"step\": 8, \"wall_s\": 1.5}\n{\"step\": 16, \"wall_s\": 3.25}\n";
  const char *got = slurp(jl);
  CG_TEST_CHECK(got && !strcmp(got, want_j), "JSONL kept:\n%s\nwant:\n%s", got ? got : "(none)",
                want_j);
  got = slurp(csv);
  const char *want_c = "8,1\n16,2\n";
  const char *rows = got ? strchr(got, '\n') : NULL; /* after the header the run writes */
  CG_TEST_CHECK(rows && !strcmp(rows + 1, want_c), "CSV kept:\n%s\nwant rows:\n%s",
                got ? got : "(none)", want_c);
  unlink(jl);
  unlink(csv);
  rmdir(dir);
  return cg_test_done("test_history_keep");
}
