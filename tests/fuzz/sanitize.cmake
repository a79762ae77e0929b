# sanitize.cmake: the sanitizer options of every test, included at the end of
# tests/CMakeLists.txt when COGPU_SANITIZE is on (test properties must be set in the directory
# that made the tests). scripts/test.sh runs the label `san` of this build: the unit tests, the
# hand-written all-reduce under mpirun (test_gsync_np2/np4) and the fuzzers (label `fuzz`).
# The shell tests (train runs, MPI jobs of several minutes) are left to the normal build: under
# ASan they would take most of CI's time and test the same code the unit tests cover.
#
#   ASan        errors stop the process (-fno-sanitize-recover=all at compile time); use after
#               return is checked too (fake stacks).
#   LSan        on for unit tests, with tests/fuzz/lsan.supp: the allocations Open MPI, hwloc,
#               OpenBLAS and the OpenMP runtimes keep until exit are theirs; a leak in our code
#               fails. Off under mpirun: Open MPI dlcloses its components before exit, so their
#               leaks show as "<unknown module>" with broken stacks (no suppression can name
#               them); memory errors are still caught there.
#   UBSan       a stack trace with every report.
#   hwloc       without its PCI plugin: libpciaccess's global state leaks at exit, and hwloc
#               unloads the plugin first, so LSan sees "<unknown module>" it cannot suppress by
#               name. No test depends on PCI discovery (GPU tests do not run here: no CUDA).
#   test_loader its resident-memory check (no growth over 6000 batches) needs ASan to hold no
#               freed memory back: no quarantine, global or per thread, and no fake stacks.
set(cg_asan "detect_stack_use_after_return=1:check_initialization_order=1:strict_string_checks=1")
set(CG_SAN_ENV
  "LSAN_OPTIONS=suppressions=${CMAKE_CURRENT_LIST_DIR}/lsan.supp:print_suppressions=0"
  "UBSAN_OPTIONS=print_stacktrace=1"
  "HWLOC_COMPONENTS=-pci")
get_property(cg_san_tests DIRECTORY PROPERTY TESTS)
foreach(t ${cg_san_tests})
  get_test_property(${t} LABELS labels)
  if(t STREQUAL "test_loader")
    set(opts "quarantine_size_mb=0:thread_local_quarantine_size_kb=0")
    string(APPEND opts ":detect_stack_use_after_return=0")
  elseif("unit" IN_LIST labels)
    set(opts "${cg_asan}")
  else()  # under mpirun: Open MPI's components leak, and are unloaded before LSan can name them
    set(opts "${cg_asan}:detect_leaks=0")
  endif()
  set_property(TEST ${t} APPEND PROPERTY ENVIRONMENT ${CG_SAN_ENV} "ASAN_OPTIONS=${opts}")
  if("unit" IN_LIST labels OR t MATCHES "^test_gsync_np")
    set_property(TEST ${t} APPEND PROPERTY LABELS san)
  endif()
endforeach()
# The fuzz targets (tests/fuzz/CMakeLists.txt) add these; leaks are checked per input there.
list(APPEND CG_SAN_ENV "ASAN_OPTIONS=${cg_asan}")
