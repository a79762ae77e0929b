# scripts/common.sh: shared by the set-up scripts (sourced, not run).
# Installs the Debian packages the project needs (only the missing ones), configures and builds.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
PACKAGES="build-essential cmake pkg-config libopenmpi-dev openmpi-bin libhwloc-dev hwloc
  libopenblas-openmp-dev libpng-dev python3 slurm-wlm munge prometheus ${EXTRA_PACKAGES:-}"

cg_install_packages() {
  local missing=()
  for p in $PACKAGES; do
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

cg_build() {
  echo "== configuring and building in $BUILD"
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-} > "$BUILD.configure.log" 2>&1 \
    || { cat "$BUILD.configure.log"; exit 1; }
  grep -E "CUDA backend|OpenBLAS" "$BUILD.configure.log" || true
  cmake --build "$BUILD" -j"$(nproc)"
}

# Open MPI refuses root unless told; more ranks than cores need oversubscription. Both belong to
# the launch, not to the binary.
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_rmaps_base_oversubscribe=1
