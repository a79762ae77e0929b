/* nodlclose.c: LD_PRELOAD library for leak checks of whole runs (test_setup_fail.sh asan).
 *
 * Open MPI dlcloses its components before exit; LeakSanitizer then sees their allocations with
 * frames in no module, which no suppression can name. With dlclose a no-op every library stays
 * mapped until exit, so the stacks reach libmpi's own frames, which tests/fuzz/lsan.supp names. */
int dlclose(void *handle);

int dlclose(void *handle) {
  (void)handle;
  return 0;
}
