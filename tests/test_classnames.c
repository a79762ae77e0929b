/* test_classnames.c: --class-names parsed (classnames.h): lists and files, the count against K
 * (0: any), what is refused, the canonical list reading back the same, a stored list never
 * opened as a file; and the data sets' files in scripts/datasets/ (VOC, Cityscapes, ADE20K
 * names; Cityscapes' labelIds map) parse for their class counts. */
#include <stdio.h>
#include <stdlib.h> /* mkstemp */
#include <string.h>
#include <unistd.h> /* write, close, unlink */

#include "classnames.h"
#include "labelmap.h"
#include "testutil.h"

static cg_classnames_t n, back;
static char err[1024], joined[CG_CLASSNAMES_LEN];

/* spec parses for k classes into want (names joined by commas) or, want NULL, is refused with
 * a message holding why. */
static void check(const char *spec, int k, const char *want, const char *why) {
  const int rc = cg_classnames_parse(spec, k, &n, err, sizeof err);
  if (!want) {
    CG_TEST_CHECK(rc == -1 && n.k == 0 && strstr(err, why), "'%s' (K %d): rc %d, '%s', want "
                  "'%s'", spec, k, rc, rc ? err : "", why);
    return;
  }
  cg_classnames_join(&n, joined, sizeof joined);
  CG_TEST_CHECK(rc == 0 && !strcmp(joined, want), "'%s' (K %d): rc %d '%s' -> '%s', want '%s'",
                spec, k, rc, rc ? err : "", joined, want);
  if (rc || !n.k) return;
  CG_TEST_CHECK(cg_classnames_from_list(joined, k, &back, err, sizeof err) == 0 &&
                back.k == n.k, "'%s' does not read back", joined);
  for (int c = 0; c < n.k && c < back.k; c++)
    CG_TEST_CHECK(!strcmp(n.name[c], back.name[c]), "name %d reads back otherwise", c);
}

/* scripts/datasets/FILE holds k names: the first and the last as given. */
static void dataset(const char *file, int k, const char *first, const char *last) {
  char path[512];
  snprintf(path, sizeof path, "%s/../scripts/datasets/%s", CG_TEST_SOURCE_DIR, file);
  const int rc = cg_classnames_parse(path, k, &n, err, sizeof err);
  CG_TEST_CHECK(rc == 0 && n.k == k, "%s: rc %d %s", file, rc, rc ? err : "");
  if (rc) return;
  CG_TEST_CHECK(!strcmp(n.name[0], first) && !strcmp(n.name[k - 1], last),
                "%s: '%s' .. '%s'", file, n.name[0], n.name[k - 1]);
  cg_classnames_join(&n, joined, sizeof joined);
  printf("%s: %d names, %zu bytes as a list\n", file, k, strlen(joined));
}

int main(void) {
  check("", 3, "", NULL);
  check("a,b,c", 3, "a,b,c", NULL);
  check(" a ,\tb b\t, c ", 3, "a,b b,c", NULL);
  check("Straße,路,x", 3, "Straße,路,x", NULL);
  check("a,b,c", 0, "a,b,c", NULL); /* any count: the spelling alone */
  check("a,b", 3, NULL, "'a,b': 2 names for 3 classes");
  check("a,b,c,d", 3, NULL, "name 4: more than 3 names for 3 classes");
  check("a,b,", 3, NULL, "name 3: an empty name (class 2)");
  check(",a,b", 3, NULL, "name 1: an empty name (class 0)");
  check("a,b,a", 3, NULL, "classes 0 and 2 are both named 'a'");
  check("a,b\"x,c", 3, NULL, "class 1's name holds a quote");
  check("a,b\\x,c", 3, NULL, "class 1's name holds a backslash");
  check("a,b\x7f,c", 3, NULL, "class 1's name holds a control character");
  check("a,\xc3\x28,c", 3, NULL, "bytes that are not UTF-8");         /* a cut sequence */
  check("a,\xc0\xaf,c", 3, NULL, "bytes that are not UTF-8");         /* an overlong '/' */
  check("a,\xed\xa0\x80,c", 3, NULL, "bytes that are not UTF-8");     /* a surrogate */
  check("a,\xf4\x90\x80\x80,c", 3, NULL, "bytes that are not UTF-8"); /* above U+10FFFF */
  check("a,b", 1, NULL, "names the classes of a model of K >= 2 classes");
  char longname[64];
  memset(longname, 'x', 49);
  snprintf(longname + 49, sizeof longname - 49, ",b");
  check(longname, 2, NULL, "class 0's name is 49 bytes, longer than 48");
  check(longname + 1, 2, longname + 1, NULL); /* 48 bytes: the longest */
  /* 255 names of 8 bytes: 2294 bytes with the commas, over the total */
  char many[4096];
  size_t at = 0;
  for (int c = 0; c < 255; c++) at += (size_t)snprintf(many + at, sizeof many - at, "%sclass%03d",
                                                      c ? "," : "", c);
  check(many, 255, NULL, "the names are longer than 2047 bytes together");
  /* a value without a comma is a FILE; a stored list never is one */
  check("/nonexistent-names", 3, NULL, "'/nonexistent-names' is no file");
  CG_TEST_CHECK(cg_classnames_from_list("/etc/hostname", 2, &n, err, sizeof err) == -1 &&
                strstr(err, "is one name, not a list"), "a stored value opened as a file: %s",
                err);
  CG_TEST_CHECK(n.k == 0, "a refused list left names");
  /* a FILE's comments: whole lines, and after a name from a '#' that starts a word */
  char file[] = "/tmp/cg_classnames_XXXXXX";
  const int fd = mkstemp(file);
  const char text[] = "# classes\nroad  # class 0\nC#\n\tsky\t#\tthe last\n";
  CG_TEST_CHECK(fd >= 0 && write(fd, text, sizeof text - 1) == (ssize_t)(sizeof text - 1),
                "the names file");
  if (fd >= 0) close(fd);
  check(file, 3, "road,C#,sky", NULL);
  FILE *cr = fopen(file, "w"); /* old Mac line ends: "road\rsky" would be one name */
  CG_TEST_CHECK(cr && fputs("road\rcar\rsky\r", cr) >= 0 && fclose(cr) == 0, "the CR file");
  check(file, 3, NULL, ":1: a carriage return inside a line: the file has old Mac line ends");
  cr = fopen(file, "w"); /* a CR ending the file ends its last line */
  CG_TEST_CHECK(cr && fputs("road\ncar\r\nsky\r", cr) >= 0 && fclose(cr) == 0, "the CR file");
  check(file, 3, "road,car,sky", NULL);
  unlink(file);
  dataset("voc.names", 21, "background", "tvmonitor");
  dataset("cityscapes.names", 19, "road", "bicycle");
  dataset("ade20k.names", 150, "wall", "flag");
  dataset("msrc21.names", 21, "building", "boat");
  check("bed ,b", 2, "bed,b", NULL); /* mmsegmentation's ADE20K list spells 'bed ' */
  /* Cityscapes' labelIds to train ids: 7 -> road (0), 33 -> bicycle (18), the rest ignored */
  char map[512];
  cg_labelmap_t m;
  snprintf(map, sizeof map, "%s/../scripts/datasets/cityscapes-labelIds.map", CG_TEST_SOURCE_DIR);
  const int rc = cg_labelmap_parse(map, 19, 255, &m, err, sizeof err);
  CG_TEST_CHECK(rc == 0, "cityscapes-labelIds.map: %s", rc ? err : "");
  int mapped = 0;
  for (int v = 0; v < 256 && !rc; v++) mapped += m.to[v] != 255;
  CG_TEST_CHECK(!rc && m.to[7] == 0 && m.to[26] == 13 && m.to[33] == 18 && m.to[0] == 255 &&
                m.to[34] == 255 && mapped == 19, "cityscapes-labelIds.map: %d values mapped",
                mapped);
  return cg_test_done("test_classnames");
}
