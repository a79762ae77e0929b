/* atomic_file.h: the one way every output file is written — replaced whole or not at all.
 *
 * A writer gets a temporary file in the target's directory, writes through a FILE *, and
 * commits: flush, fsync, rename over the target, fsync of the directory. Readers (the monitor,
 * node_exporter, a resuming run) see the old file or the new one, never a part; a failure at
 * any point (full disk, I/O error) removes the temporary and leaves the old target as it was.
 *
 * Safety against planted links: the temporary's name is ".<basename>.XXXXXX" with six random
 * characters, created with O_CREAT | O_EXCL | O_NOFOLLOW, so a symlink or file someone placed at
 * any name is never opened, written through or truncated. The rename replaces the target path
 * itself: when the target is a symlink, the link is replaced by a regular file and the file it
 * pointed to is left untouched (the usual atomic-replace semantics, as `mv` and editors do).
 * The directory is opened once and every later step is relative to it (openat, renameat), so
 * the temporary and the rename stay in the same directory even if the path is changed between.
 *
 * Mode: the kernel applies the umask (and a default ACL) to 0666, exactly as fopen(path, "w")
 * would for a new file; no process-wide umask() call, which would race with other threads.
 * The mode and owner of a file being replaced are not kept (a new inode replaces it).
 *
 * The append-only counterpart (cg_afile_append) is for logs the user names (--stats-out).
 *
 * Return values: 0, or -1 with a one-line message in err naming the target path, the failing
 * operation and errno's string (err may be NULL). No MPI, no CUDA, no process-wide state: any
 * thread may use its own handle. */
#ifndef CG_ATOMIC_FILE_H
#define CG_ATOMIC_FILE_H

#include <stddef.h>
#include <stdio.h>

typedef struct cg_afile cg_afile_t;

/* Creates the temporary for path. NULL (err filled) when path names no file (empty, ends in
 * '/'), its directory cannot be opened, or the temporary cannot be created. The handle is the
 * caller's until cg_afile_commit or cg_afile_abort, which always free it. */
cg_afile_t *cg_afile_open(const char *path, char *err, size_t errlen);

/* The stream to write the content through (fprintf, fwrite, fseek, libpng): owned by the
 * handle, never fclose'd by the caller; fileno() of it is -1. Write errors are remembered with
 * their errno and reported by cg_afile_commit. */
FILE *cg_afile_stream(cg_afile_t *f);

/* fwrite of n bytes: 0, or -1 (the error is reported again at commit). */
int cg_afile_write(cg_afile_t *f, const void *buf, size_t n);

/* Flushes, fsyncs, renames over the target and fsyncs the directory (best effort: some file
 * systems cannot; the new file is in place either way). On -1 the temporary is removed and
 * the target is as it was. Frees f in every case. */
int cg_afile_commit(cg_afile_t *f, char *err, size_t errlen);

/* Removes the temporary and frees f; the target is untouched. NULL is a no-op. */
void cg_afile_abort(cg_afile_t *f);

/* Whether name (a directory entry) looks like a temporary cg_afile_open made, ".<base>.XXXXXX"
 * with six letters or digits of more than one kind (mkstemp's mix them; a user's ".best.backup"
 * does not, so about 1% of real temporaries are not recognised, harmlessly). 1 with <base> in
 * base (len bytes, truncated), else 0. For the cleanup of a writer killed mid-write. */
int cg_afile_temp_base(const char *name, char *base, size_t len);

/* open + write n bytes + commit, for content already in memory. */
int cg_afile_save(const char *path, const void *buf, size_t n, char *err, size_t errlen);

/* How an output is written, for cg_afile_check. */
typedef enum {
  CG_AFILE_REPLACE, /* cg_afile_open/commit: a regular file, a temporary renamed over it */
  CG_AFILE_APPEND,  /* cg_afile_append with streams_ok: a regular file, a FIFO or a character
                       device (/dev/stdout), only ever appended to */
  CG_AFILE_REPLACE_SHARD, /* as REPLACE, for the one writer of .cgds shards (pack --out): the
                             existing file may be a shard */
  CG_AFILE_REPLACE_HISTORY, /* as REPLACE, for train's --history-out (a resume rewrites it):
                               the existing file may be a run's history */
} cg_afile_how_t;

/* The start-up check of an output path the user named with flag ("--out"), so that a bad one is a
 * usage error before any work, and a FIFO or device is never replaced by a regular file: 0 when
 * path can be written as `how` says (an existing target is writable and of a kind `how` takes; a
 * new one's directory exists and is writable), else -1 with one line in err naming flag, path and
 * what it is. Nothing is created. An existing file that holds input data (a PNG, JPEG, GIF, TIFF
 * or BMP image, a checkpoint, a checkpoint directory's last or best, a .cgds shard, known by their
 * first bytes) is refused, and so is a checkpoint's name (ckpt-N.cgck): a mistyped output path
 * must not destroy a data set or a run. So is a run's validation history or --stats-out log (by
 * its first record), but a history for --history-out and a stats log for what appends. */
int cg_afile_check(const char *flag, const char *path, cg_afile_how_t how, char *err,
                   size_t errlen);
/* "a FIFO", "a character device", "a directory"...: what a st_mode is, for messages. */
const char *cg_afile_kind(unsigned mode);

/* Opens a log for appending, created (0666 & ~umask) when absent, O_APPEND | O_CLOEXEC; the
 * caller fclose()s it. The path is the user's: a symlink there is followed, because pointing a
 * log elsewhere is a legitimate choice (where others may plant links, in sticky world-writable
 * directories such as /tmp, the kernel's fs.protected_symlinks refuses to follow another
 * user's link). What makes it safe instead: it is never truncated or replaced, only appended
 * to; the descriptor is not inherited by children; and it must be a regular file, or with
 * streams_ok also a FIFO or a character device (/dev/stdout) — anything else is refused. It is
 * opened O_NONBLOCK, so a FIFO that no process reads is an error (ENXIO), never a wait; writes
 * block afterwards, as a pipe's do. The writer to a FIFO must expect its reader to go (EPIPE,
 * and SIGPIPE unless blocked). */
FILE *cg_afile_append(const char *path, int streams_ok, char *err, size_t errlen);

/* The reading side: the whole of a regular file in memory, NUL-terminated (binary-safe: *len
 * bytes, len may be NULL); the caller frees. NULL with errno set (open's, read's; EISDIR for a
 * directory, EINVAL for anything else that is not a regular file: a FIFO, /dev/zero, which have
 * no size and may never end; ENOMEM for a file larger than can be held) and err (may be NULL)
 * saying why without the path, so the caller can tell a missing file (ENOENT) and name it. */
char *cg_file_read(const char *path, size_t *len, char *err, size_t errlen);

#endif
