#!/usr/bin/env bash
# cmake --install: the already-built build directory installed into a temporary prefix gives a
# usable PREFIX/bin (issue 12). Checks: the layout (binaries, Slurm scripts, data set files, docs);
# that the binaries find every runtime library through their RPATH, with no LD_LIBRARY_PATH and no
# path into the build or source tree; that they run from a bare environment (info --model, --help);
# that the installed train.sbatch, run outside Slurm with only a job id faked, finds and runs the
# installed cogpu-dist by itself; a DESTDIR staging install; and that the README's and docs/'s
# relative links resolve inside the repository (a clone has nothing beside it).
set -uo pipefail
BIN=$1; MPIEXEC=$2; BUILD=$(cd "$3" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
CMAKE=${CG_CMAKE:-cmake}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
P=$T/prefix
fail=0
bad() { echo "FAIL $*"; fail=1; }
: "$BIN"

if ! "$CMAKE" --install "$BUILD" --prefix "$P" > "$T/install.log" 2>&1; then
  cat "$T/install.log"; echo "FAIL cmake --install $BUILD --prefix $P"; exit 1
fi
echo "PASS cmake --install --prefix ($(grep -c Installing "$T/install.log") files)"

# ---- layout ----
bins="cogpu-dist cogpu-monitor"
[ -x "$BUILD/bench/cogpu-bench" ] && bins="$bins cogpu-bench"  # not built under the sanitizers
for b in $bins; do [ -x "$P/bin/$b" ] || bad "no executable $P/bin/$b"; done
SL=$P/share/cogpu-dist/slurm
for s in train multinode scaling; do
  f=$SL/$s.sbatch
  if [ ! -x "$f" ]; then bad "no executable $f"; continue; fi
  bash -n "$f" || bad "$f: syntax"
  grep -qxF "CG_BIN=\${CG_BIN:-'$P/bin/cogpu-dist'} # set by cmake --install" "$f" ||
    bad "$f: default CG_BIN is not $P/bin/cogpu-dist: $(grep '^CG_BIN=' "$f")"
done
DOC=$P/share/doc/cogpu-dist
DS=$P/share/cogpu-dist/datasets # the README's data set recipes name these files
for f in "$SL/README.md" "$DOC/README.md" "$DOC/docs/ARCHITECTURE.md" "$DOC/bench/RESULTS.md" \
         "$DS/cityscapes-labelIds.map" "$DS/isprs.colors" "$DS/voc.names"; do
  [ -s "$f" ] || bad "missing $f"
done
[ $fail -eq 0 ] && echo "PASS layout: bin/{$bins}, share/cogpu-dist/{slurm/*.sbatch,datasets}, share/doc/cogpu-dist/{README.md,docs,bench}"

# ---- runtime libraries: RPATH only, nothing from the build or source tree ----
for b in $bins; do
  [ -x "$P/bin/$b" ] || continue
  missing=$(env -u LD_LIBRARY_PATH ldd "$P/bin/$b" 2>&1 | grep "not found")
  [ -z "$missing" ] || bad "$b: libraries not found without LD_LIBRARY_PATH: $missing"
  rp=$(readelf -d "$P/bin/$b" 2>/dev/null | grep -E 'R(UN)?PATH' || true)
  case $rp in *"$BUILD"*|*"$SRC/"*) bad "$b: RPATH points into the build or source tree: $rp" ;; esac
done
echo "PASS runtime libraries found without LD_LIBRARY_PATH; cogpu-dist's RPATH: $(readelf -d "$P/bin/cogpu-dist" | sed -nE 's/.*R(UN)?PATH.*\[(.*)\]/\2/p')"

# ---- the binaries from a bare environment (no PATH to the build, no LD_LIBRARY_PATH) ----
bare=(env -i PATH=/usr/bin:/bin HOME="$T" TMPDIR="${TMPDIR:-/tmp}"
      OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1)
"${bare[@]}" "$P/bin/cogpu-dist" info --model > "$T/info" 2>&1 || bad "cogpu-dist info --model: exit $?"
grep -q "parameters: 7,760,673" "$T/info" || { cat "$T/info"; bad "cogpu-dist info --model: no parameter count"; }
"${bare[@]}" "$P/bin/cogpu-monitor" --help > "$T/mon" 2>&1 || bad "cogpu-monitor --help: exit $?"
grep -q "usage: cogpu-monitor" "$T/mon" || bad "cogpu-monitor --help: no usage"
if [[ " $bins " == *" cogpu-bench "* ]]; then
  "${bare[@]}" "$P/bin/cogpu-bench" --help > "$T/bench" 2>&1 || bad "cogpu-bench --help: exit $?"
  grep -q "usage: cogpu-bench" "$T/bench" || bad "cogpu-bench --help: no usage"
fi
[ $fail -eq 0 ] && echo "PASS installed binaries run: $(grep parameters: "$T/info"), --help of the others"

# ---- the installed train.sbatch outside Slurm: CG_BIN unset, P/bin not on PATH ----
mkdir -p "$T/job"
(cd "$T/job" && env -u CG_BIN PATH="$(dirname "$MPIEXEC"):/usr/bin:/bin" SLURM_JOB_ID=4242 SLURM_NTASKS=1 \
   SLURM_SUBMIT_DIR="$T/job" CG_BACKEND=cpu CG_MPIRUN="$MPIEXEC" CG_MPIRUN_ARGS=--oversubscribe \
   CG_ARGS="--model-base 4 --model-depth 2 --image-size 32 --batch 2 --train-samples 8 --val-samples 0 --steps 2 --threads 1" \
   timeout 120 bash "$SL/train.sbatch") > "$T/job.out" 2>&1
rc=$?
if [ $rc -ne 0 ] || [ ! -s "$T/job/cogpu-run-4242/metrics.json" ] || ! grep -q "$P/bin/cogpu-dist train" "$T/job.out"; then
  cat "$T/job.out"; bad "installed train.sbatch (exit $rc) did not run $P/bin/cogpu-dist to the end"
else
  echo "PASS installed train.sbatch ran $P/bin/cogpu-dist by itself: $(grep -o 'finished: .*' "$T/job.out")"
fi

# ---- DESTDIR staging (packagers): files under DESTDIR, paths inside them without it ----
if DESTDIR="$T/stage" "$CMAKE" --install "$BUILD" --prefix /opt/cogpu > "$T/stage.log" 2>&1 &&
   [ -x "$T/stage/opt/cogpu/bin/cogpu-dist" ] &&
   grep -q "^CG_BIN=\${CG_BIN:-'/opt/cogpu/bin/cogpu-dist'}" "$T/stage/opt/cogpu/share/cogpu-dist/slurm/train.sbatch"; then
  echo "PASS DESTDIR=\$T/stage --prefix /opt/cogpu: files staged, scripts name /opt/cogpu/bin"
else
  cat "$T/stage.log"; bad "DESTDIR staging install"
fi

# ---- a clone is self-contained: every relative link of README.md and docs/*.md resolves, in
# the source tree and in the installed documentation ----
nlinks=0
check_links() { # ROOT FILE...: the relative links of each FILE must name a file
  local root=$1 md link target; shift
  for md in "$@"; do
    [ -f "$md" ] || continue
    while IFS= read -r link; do
      target=${link%%#*}
      case $target in ''|http://*|https://*|mailto:*) continue ;; esac
      nlinks=$((nlinks + 1))
      [ -e "$(dirname "$md")/$target" ] || bad "${md#"$root"/}: link to $target does not resolve"
    done < <(grep -oE '\]\([^)]+\)' "$md" | sed -E 's/^\]\((.*)\)$/\1/')
  done
}
check_links "$SRC" "$SRC/README.md" "$SRC"/docs/*.md "$SRC/scripts/slurm/README.md"
check_links "$DOC" "$DOC/README.md" "$DOC"/docs/*.md
if grep -rnE '\.\./shared|(^|[^a-z_])shared/ARCHITECTURE' "$SRC/README.md" "$SRC/docs" "$SRC/scripts" 2> /dev/null; then
  bad "a reference to the workspace's ../shared, which a clone does not have"
fi
[ $fail -eq 0 ] && echo "PASS $nlinks relative links of README.md, docs/, scripts/slurm/README.md resolve (source and installed); no ../shared"
exit $fail
