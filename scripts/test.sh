#!/usr/bin/env bash
# scripts/test.sh: installs what is missing, builds, and runs the whole CTest suite.
# GPU tests (label gpu) skip themselves where no GPU is usable. .ci/run calls exactly this.
#
# Then the sanitizer build (BUILD_SAN, default build-san: clang, ASan + UBSan, no CUDA) runs
# its label `san`: the unit tests and the MPI all-reduce test under the sanitizers, and each
# libFuzzer target for COGPU_FUZZ_SECONDS (25) after replaying its seeds and regression inputs
# (tests/fuzz/sanitize.cmake and tests/fuzz/CMakeLists.txt say what and why). It runs when
# the whole suite runs (no ctest arguments given) or SAN=1; SAN=0 skips it. Both stages run
# even when the first fails; the exit code is non-zero when either did.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cg_install_packages $PACKAGES_MAIN $PACKAGES_TEST
cg_build
# The interop tests' ONNX part (label interop) needs onnxruntime, and test_tensorboard needs
# TensorBoard, both from PyPI, in a venv that sees Debian's torch; the tests find it at
# $BUILD/interop-venv and, without it, skip those parts and say so.
if ! "$BUILD/interop-venv/bin/python" -c "import onnxruntime, tensorboard" 2> /dev/null; then
  t0=$(date +%s)
  { /usr/bin/python3 -m venv --system-site-packages "$BUILD/interop-venv" &&
    "$BUILD/interop-venv/bin/pip" install -q onnxruntime tensorboard; } ||
    echo "== interop venv with onnxruntime and tensorboard could not be made: those checks will be skipped"
  echo "== interop venv: $(($(date +%s) - t0)) s"
fi
rc=0
(cd "$BUILD" && ctest --output-on-failure --timeout 900 "$@") || rc=$?
SAN=${SAN:-$([ $# -eq 0 ] && echo 1 || echo 0)}
if [ "$SAN" = 1 ] && ! cg_have_clang; then
  echo "== sanitizer stage skipped: clang not found"
elif [ "$SAN" = 1 ]; then
  cg_build_san
  (cd "$BUILD_SAN" && ctest --output-on-failure --timeout 900 -L san) || rc=$?
fi
exit $rc
