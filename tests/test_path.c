/* test_path.c: cg_path_abs (path.h), the absolute form of --data / --val-data that a
 * checkpoint keeps: "." and empty components dropped, ".." and symbolic links left alone. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "path.h"
#include "testutil.h"

static void check(const char *in, const char *want) {
  char out[64];
  const int rc = cg_path_abs(in, out, sizeof out);
  CG_TEST_CHECK(rc == 0 && !strcmp(out, want), "'%s' -> '%s' (rc %d), want '%s'", in,
                rc ? "" : out, rc, want);
}

int main(void) {
  check("/a/./b//c/", "/a/b/c");
  check("/", "/");
  check("//", "/");
  check("/..", "/..");
  check("/a/../../b", "/a/../../b");
  check("/a/b/..", "/a/b/..");
  check("/a/b/../", "/a/b/..");
  CG_TEST_CHECK(chdir("/tmp") == 0, "chdir /tmp");
  check("x", "/tmp/x");
  check("./x/", "/tmp/x");
  check("x/../y", "/tmp/x/../y");
  check("..", "/tmp/..");
  check(".", "/tmp");
  char out[8] = "keep";
  CG_TEST_CHECK(cg_path_abs("", out, sizeof out) == -1 && !strcmp(out, "keep"), "empty path");
  CG_TEST_CHECK(cg_path_abs("/abcdefgh", out, sizeof out) == -1 && !strcmp(out, "keep"),
                "too long for out");
  CG_TEST_CHECK(cg_path_abs("/abcdef", out, sizeof out) == 0 && !strcmp(out, "/abcdef"),
                "exactly fits");
  char same[32] = "a/../b";
  CG_TEST_CHECK(cg_path_abs(same, same, sizeof same) == 0 && !strcmp(same, "/tmp/a/../b"),
                "in place: '%s'", same);
  return cg_test_done("test_path");
}
