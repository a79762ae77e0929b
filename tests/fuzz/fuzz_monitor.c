/* fuzz_monitor.c: the stats JSON reader (src/base/json.c) and cogpu-monitor's view (src/report/monitor.c).
 *
 * An input is a --stats-out file: any bytes, lines of JSON records in the normal case. It is
 *   - parsed whole by cg_json_parse (the strict reader: one value);
 *   - checked and drawn line by line (cg_monitor_check, cg_monitor_render with and without
 *     escape codes), where check's verdict must be render's;
 *   - followed by a source as a job writes it: a regular file that grows in two steps, then is
 *     replaced by a shorter one (a new job), and the same bytes through a pipe (a stream);
 *     whatever record the source keeps is drawn.
 * Rendering goes to /dev/null: the fuzzer looks for crashes, leaks and UB, not for layout. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_util.h" // cg_fuzz_*: memfd inputs
#include "json.h"      // cg_json_parse
#include "monitor.h"   // cg_monitor_check, cg_monitor_render, cg_monitor_src_*

static cg_fuzz_file_t g_in;
static FILE *g_null;

#define MAX_LINES 64 /* lines checked and drawn one by one per input (bounded time) */

static void fail(const char *what) {
  fprintf(stderr, "fuzz_monitor: %s\n", what);
  abort();
}

static void draw(const char *line, long bad, const char *last_bad) {
  char err[512];
  for (int ansi = 0; ansi < 2; ansi++) {
    cg_monitor_view_t v = {"stats.jsonl", ansi ? 3.0 : -1.0, bad, last_bad, ansi};
    cg_monitor_render(line, &v, g_null, err, sizeof err);
  }
}

static void by_line(char *text) {
  char why[512], err[512];
  int k = 0;
  for (char *line = text, *next; line && k < MAX_LINES; line = next, k++) {
    next = strchr(line, '\n');
    if (next) *next++ = 0;
    why[0] = 0;
    const int ok = cg_monitor_check(line, why, sizeof why) == 0;
    for (int ansi = 0; ansi < 2; ansi++) {
      cg_monitor_view_t v = {"stats.jsonl", ansi ? 12.0 : -1.0, ansi ? 2 : 0, "bad JSON", ansi};
      const int drawn = cg_monitor_render(line, &v, g_null, err, sizeof err) == 0;
      if (drawn != ok) fail("cg_monitor_check and cg_monitor_render disagree on a line");
      if (!ok && !why[0]) fail("a refused line without a reason");
    }
  }
}

static void follow(cg_monitor_src_t *s) {
  char err[512];
  if (cg_monitor_src_read(s, err, sizeof err) < 0) return;
  const char *why = NULL;
  long bad = cg_monitor_src_bad(s, &why);
  if (bad < 0 || (bad > 0 && !why)) fail("bad-line count without a reason");
  const char *rec = cg_monitor_src_record(s);
  if (rec) {
    char w[512];
    if (cg_monitor_check(rec, w, sizeof w) != 0) fail("the source kept a record check refuses");
    draw(rec, bad, why);
  }
  (void)cg_monitor_src_age(s);
  (void)cg_monitor_src_final(s);
}

static void as_file(const uint8_t *data, size_t n) {
  cg_monitor_src_t *s = cg_monitor_src_create(g_in.path);
  if (!s) fail("out of memory");
  const size_t half = n / 2;
  cg_fuzz_file_put(&g_in, data, half);
  follow(s);
  cg_fuzz_file_put(&g_in, data, n); /* the job appended the rest */
  follow(s);
  const size_t cut = n > 16 ? n / 3 : 0; /* a new job replaced the file with a shorter one */
  cg_fuzz_file_put(&g_in, data + n - cut, cut);
  follow(s);
  if (cg_monitor_src_is_stream(s)) fail("a regular file read as a stream");
  cg_monitor_src_destroy(s);
}

static void as_stream(const uint8_t *data, size_t n) {
  int p[2];
  if (pipe2(p, O_CLOEXEC)) fail("pipe");
  fcntl(p[1], F_SETFL, O_NONBLOCK);
  if (n > 0 && write(p[1], data, n) < 0) { /* a pipe holds 64 KiB: the rest is dropped */
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", p[0]);
  cg_monitor_src_t *s = cg_monitor_src_create(path);
  if (!s) fail("out of memory");
  follow(s);
  close(p[1]); /* the writer is gone: the stream ends */
  follow(s);
  if (!cg_monitor_src_is_stream(s)) fail("a pipe not read as a stream");
  cg_monitor_src_destroy(s);
  close(p[0]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  cg_fuzz_file_open(&g_in, "stats.jsonl");
  g_null = cg_fuzz_devnull(0);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  char *text = cg_fuzz_strndup(data, n), err[512];
  cg_json_free(cg_json_parse(text, err, sizeof err));
  by_line(text);
  free(text);
  as_file(data, n);
  as_stream(data, n);
  return 0;
}
