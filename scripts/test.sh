#!/usr/bin/env bash
# scripts/test.sh: installs what is missing, builds, and runs the whole CTest suite.
# GPU tests (label gpu) skip themselves where no GPU is usable. .ci/run calls exactly this.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cg_install_packages
cg_build
cd "$BUILD"
ctest --output-on-failure --timeout 900 "$@"
