/* path.h: file names as the user typed them, made independent of the working directory, and
 * the directories they need. */
#ifndef CG_PATH_H
#define CG_PATH_H

#include <stddef.h>

/* The absolute form of path: a relative path is put under the working directory, then "." and
 * empty components are dropped. ".." is kept: after a symbolic link it leads where the link's
 * target's parent is, which only the file system knows (lnk/../x is not x), and links are not
 * resolved either (/data/current stays /data/current). 0, or -1 (out unchanged) when the
 * working directory is unknown or out is too short. */
int cg_path_abs(const char *path, char *out, size_t outlen);

/* 1 when a and b both exist and are the same file (device and inode: through links and
 * different spellings), else 0. For refusing an output that is one of the inputs. */
int cg_path_same_file(const char *a, const char *b);

/* mkdir -p: dir and its missing parents (mode 0777 before the umask); 0 when dir is a directory
 * afterwards, else -1 with errno (ENOTDIR: it exists as something else). */
int cg_path_mkdir_p(const char *dir);

#endif
