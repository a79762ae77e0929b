# scripts/common.sh: shared by the set-up scripts (sourced, not run).
# Installs the Debian packages the project needs (only the missing ones), configures and builds.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
# The sanitizer and fuzzing build (cg_build_san): its own directory, clang, no CUDA.
BUILD_SAN=${BUILD_SAN:-$ROOT/build-san}
# The Debian packages, in two lists:
# - PACKAGES_MAIN: what building and running the trainer needs (scripts/quickstart.sh installs
#   only these): compiler and CMake, MPI, hwloc, OpenBLAS, libpng, libjpeg-turbo;
# - PACKAGES_TEST: what only the test suite adds (scripts/test.sh installs both lists): python3
#   for the test scripts, djpeg/cjpeg (libjpeg-turbo-progs: the JPEG decode test), hwloc's tools (lstopo), slurm-wlm and munge for the one-node Slurm
#   test, prometheus for promtool, valgrind for the set-up leak test; clang with its runtimes (libFuzzer, ASan, UBSan:
#   libclang-rt-dev) and OpenMP (libomp-dev) for the sanitizer build, llvm for llvm-symbolizer
#   (stack traces with file:line); python3-matplotlib for scripts/plot_history.py (its test);
#   python3-torch and python3-venv for the interop tests (PyTorch parity; scripts/test.sh makes
#   a venv over them with onnxruntime from PyPI); python3-torchvision for the --color-jitter
#   parity test; iproute2 for the emulated nodes of the
#   multi-node tests (scripts/emunodes.sh: veth pairs and a bridge).
# EXTRA_PACKAGES is added to either.
PACKAGES_MAIN="build-essential cmake pkg-config libopenmpi-dev openmpi-bin libhwloc-dev
  libopenblas-openmp-dev libpng-dev libjpeg62-turbo-dev libgif-dev libtiff-dev"
PACKAGES_TEST="python3 python3-pil libjpeg-turbo-progs hwloc slurm-wlm munge prometheus valgrind clang libclang-rt-dev libomp-dev llvm python3-matplotlib python3-torch python3-torchvision python3-venv iproute2"

# cg_install_packages PACKAGE...: installs those of the list (and EXTRA_PACKAGES) that are
# missing, with apt-get (through sudo when not root).
cg_install_packages() {
  local missing=()
  for p in "$@" ${EXTRA_PACKAGES:-}; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "== packages: all present"
    return
  fi
  echo "== installing: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# cg_build [TARGET...]: configures $BUILD and builds the targets given (default: everything).
cg_build() {
  echo "== configuring and building in $BUILD"
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-} > "$BUILD.configure.log" 2>&1 \
    || { cat "$BUILD.configure.log"; exit 1; }
  grep -E "CUDA backend|OpenBLAS" "$BUILD.configure.log" || true
  cmake --build "$BUILD" -j"$(nproc)" ${1:+--target "$@"}
}

# The sanitizer build: clang, ASan + UBSan + libFuzzer coverage (-DCOGPU_FUZZ=ON), no CUDA.
# The normal build is not touched. Callers check for clang first (cg_have_clang).
cg_have_clang() { command -v clang > /dev/null; }
cg_build_san() {
  echo "== configuring and building the sanitizer build in $BUILD_SAN"
  cmake -S "$ROOT" -B "$BUILD_SAN" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCOGPU_CUDA=OFF -DCOGPU_FUZZ=ON ${CMAKE_SAN_ARGS:-} > "$BUILD_SAN.configure.log" 2>&1 \
    || { cat "$BUILD_SAN.configure.log"; exit 1; }
  cmake --build "$BUILD_SAN" -j"$(nproc)"
}

# Open MPI refuses root unless told; more ranks than cores need oversubscription. Both belong to
# the launch, not to the binary.
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_rmaps_base_oversubscribe=1
