#!/usr/bin/env bash
# CLI: every bad-input case gets one message naming the flag and the allowed range, exit code 2,
# on 2 ranks, promptly (timeout) and without leaving an output file; --help documents the
# flags; info --model prints the reference parameter count.
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
# expect_usage "description" "expected text" args...
expect_usage() {
  local what=$1 want=$2; shift 2
  local start=$SECONDS
  timeout 60 $MPIRUN -np 2 $BIN "$@" > "$T/out" 2> "$T/err"
  local rc=$?
  local n; n=$(grep -c "error:" "$T/err")
  if [ $rc -ne 2 ]; then
    echo "FAIL $what: exit code $rc, want 2"; cat "$T/err"; fail=1
  elif ! grep -q -- "$want" "$T/err"; then
    echo "FAIL $what: message lacks '$want':"; cat "$T/err"; fail=1
  elif [ "$n" -ne 1 ]; then
    echo "FAIL $what: $n error lines, want exactly 1 (rank 0 only)"; cat "$T/err"; fail=1
  else
    echo "PASS $what ($((SECONDS - start)) s): $(grep error: "$T/err")"
  fi
}
SMALL="--backend cpu --model-base 4 --model-depth 2 --image-size 32 --train-samples 16 --val-samples 0 --steps 1 --progress off"
expect_usage "unknown flag" "--bogus" train --bogus 3
expect_usage "unknown command" "frobnicate" frobnicate
expect_usage "missing value" "--batch: missing value" train $SMALL --batch
expect_usage "batch 0" "--batch: 0 is out of range 1..65536" train $SMALL --batch 0
expect_usage "batch not a number" "--batch: 'x' is not a whole number" train $SMALL --batch x
expect_usage "image size not divisible" "--image-size: 36 is not divisible by 2^depth = 8" train --model-depth 3 --image-size 36
expect_usage "negative learning rate" "--lr: -0.1 is out of range (0, 10]" train $SMALL --lr -0.1
expect_usage "zero learning rate" "--lr: 0 is out of range (0, 10]" train $SMALL --lr 0
expect_usage "hex float" "--lr: '0x1p-10' is not a number" train $SMALL --lr 0x1p-10
expect_usage "infinity" "--lr: 'inf' is not a number" train $SMALL --lr inf
expect_usage "leading blank" "--batch: ' 4' is not a whole number" train $SMALL --batch " 4"
expect_usage "negative unsigned" "--seed: -1 is out of range 0..18000000000000000000" \
  train $SMALL --seed -1
expect_usage "overflow" "--steps: 99999999999999999999 is out of range 0..1000000000000000" \
  train $SMALL --steps 99999999999999999999
expect_usage "size with a blank" "--bucket-mb: ' 1' is not a number" train $SMALL --bucket-mb " 1"
expect_usage "--val-fraction with --val-data" "--val-fraction: 0.2 of --data held out, and --val-data" \
  train $SMALL --data "$T" --val-data "$T" --val-fraction 0.2
expect_usage "--test-slow-rank beyond the job" "--test-slow-rank: rank 2 does not exist (the job \
has 2 ranks)" train $SMALL --test-slow-rank 2 --test-slow-ms 1
expect_usage "bad choice" "--backend: 'tpu' is not one of auto|cpu|cuda" train --backend tpu
expect_usage "precision on cpu" "--precision" train $SMALL --precision bf16
expect_usage "--val-data with synthetic data" "--val-data $T: separate validation data goes with" \
  train $SMALL --val-data "$T"
expect_usage "--val-fraction with synthetic data" "--val-fraction 0.3: synthetic data validates on" \
  train $SMALL --val-fraction 0.3
expect_usage "--val-data synthetic" "--val-data synthetic: separate validation data goes with" \
  train $SMALL --data "$T" --val-data synthetic
# an empty path is a mistake, never "none" (--resume alone means --checkpoint-dir)
expect_usage "empty --checkpoint-dir" "--checkpoint-dir: empty value" \
  train $SMALL --checkpoint-dir ""
expect_usage "empty --metrics-out=" "--metrics-out: empty value" train $SMALL --metrics-out=
expect_usage "empty --resume=" "--resume: empty value; give FILE|DIR, or --resume alone" \
  train $SMALL --checkpoint-dir "$T/ck" --resume=
expect_usage "empty --resume" "--resume: empty value" train $SMALL --resume ""
expect_usage "empty --data" "--data: empty value" train $SMALL --data ""
expect_usage "empty --trace-out" "--trace-out: empty value" train $SMALL --trace-out ""
expect_usage "empty predict --masks" "--masks: empty value" predict --checkpoint "$T/ck" \
  --input "$T" --output "$T/p" --masks ""
P=(predict --checkpoint "$T/ck" --input "$T" --output "$T/p") # predict: the same engine
expect_usage "predict hex float" "--tile-overlap: '0x0.8p0' is not a number" "${P[@]}" \
  --tile-overlap 0x0.8p0
expect_usage "predict fractional batch" "--batch: '4.0' is not a whole number" "${P[@]}" --batch 4.0
expect_usage "predict --max-image-pixels text" "--max-image-pixels: 'abc' is not a whole number" \
  "${P[@]}" --max-image-pixels abc
expect_usage "empty required predict --checkpoint" "--checkpoint: empty value; give a FILE|DIR" \
  predict --checkpoint "" --input "$T" --output "$T/p"
grep -q "leave the option out" "$T/err" && { echo "FAIL a required option may be left out?"; fail=1; }
[ ! -e "$T/ck" ] || { echo "FAIL a refused run made its --checkpoint-dir"; fail=1; }
mkdir -p "$T/ro"; chmod 555 "$T/ro"
if [ "$(id -u)" -eq 0 ]; then
  # root can write anywhere: use a directory that does not exist instead.
  expect_usage "unwritable output path" "--metrics-out: directory" train $SMALL --metrics-out "$T/missing/dir/m.json"
else
  expect_usage "unwritable output path" "--metrics-out: directory" train $SMALL --metrics-out "$T/ro/m.json"
fi
expect_usage "output path is a directory" "--params-out:" train $SMALL --params-out "$T"
if ls "$T/missing" "$T/ro/m.json" > /dev/null 2>&1; then echo "FAIL: a partial output file was left"; fail=1; fi
# --epochs beside --steps is not used: said once, by rank 0
timeout 60 $MPIRUN -np 2 $BIN train $SMALL --epochs 3 > "$T/ep" 2>&1 || { echo "FAIL --epochs run"; fail=1; }
[ "$(grep -c -- "warning: --epochs 3 is not used: --steps 1 sets the run's length" "$T/ep")" -eq 1 ] ||
  { echo "FAIL --epochs with --steps: want one warning"; cat "$T/ep"; fail=1; }
# --help lists every flag and exits 0 (printed once on 2 ranks).
$MPIRUN -np 2 $BIN train --help > "$T/help" 2>&1 || { echo "FAIL train --help exit code"; fail=1; }
for f in backend precision threads model-base model-depth image-size data batch steps epochs lr \
         seed val-every report-every metrics-out bucket-mb progress; do
  grep -q -- "--$f" "$T/help" || { echo "FAIL --help lacks --$f"; fail=1; }
done
[ "$(grep -c -- '--batch N' "$T/help")" -eq 1 ] || { echo "FAIL --help printed more than once"; fail=1; }
grep -q "train" <<< "$($BIN --help)" || { echo "FAIL top-level --help"; fail=1; }
$BIN info --model | grep -q "parameters: 7,760,673" || { echo "FAIL info --model count"; fail=1; }
$BIN info --model --model-base 8 --model-depth 3 --image-size 64 | grep -q "parameters: 120,969" || { echo "FAIL small model count"; fail=1; }
# a flag given twice: the last value wins (README says so, as argparse does)
$BIN info --model --model-base 4 --model-base 8 --model-depth 3 --image-size 64 |
  grep -q "parameters: 120,969" || { echo "FAIL a repeated flag: not the last value"; fail=1; }
# The README documents every flag --help shows (both come from the option table), and its copy of
# the train --help block is that block, word for word.
README=$(dirname "$0")/../README.md
if ! diff <($BIN train --help | sed -n '/^  --backend/,/^  -h, --help/p') \
          <(sed -n '/^  --backend B/,/^  -h, --help/p' "$README") > "$T/readme.diff"; then
  echo "FAIL README.md's train --help block differs from train --help:"; cat "$T/readme.diff"
  fail=1
fi
for f in $($BIN train --help | grep -oE '^  --[a-z0-9-]+' | tr -d ' '); do
  grep -q -- "$f" "$README" || { echo "FAIL README.md lacks $f"; fail=1; }
done
# The README names every Debian package the set-up scripts install (scripts/common.sh's lists).
for p in $(bash -c 'source "$1/scripts/common.sh"; echo $PACKAGES_MAIN $PACKAGES_TEST' _ \
           "$(dirname "$0")/.."); do
  grep -qE -- "(^|[ \`])$p([ \`]|\$)" "$README" || { echo "FAIL README.md lacks package $p"; fail=1; }
done
[ $fail -eq 0 ] && echo "test_cli: all passed"
exit $fail
