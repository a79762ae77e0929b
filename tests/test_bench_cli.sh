#!/usr/bin/env bash
# cogpu-bench command lines: every sub-command parses with the option engine cogpu-dist uses
# (src/base/opts.h). For each: --help lists every option below and no other; a bad value of each
# option (a missing or empty one for a path, a value for a flag) exits 2 with exactly one line
# "cogpu-bench NAME: error: --option..." and nothing on stdout; so does an unknown option. No
# benchmark runs. The training options of overlap and scaling are cogpu-dist train's (test_cli)
# but its outputs, which they refuse.
set -uo pipefail
MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
BENCH=$BUILD/bench/cogpu-bench
[ -x "$BENCH" ] || { echo "SKIP: no $BENCH (no benchmarks in a sanitizer build)"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
declare -A OPTS=(
  [train]="backend precision batch-list threads-list model-base model-depth image-size num-classes warmup
           steps windows cuda-graph tf32 profile kernels kernel-steps kernels-json peak-tflops
           peak-gbs algo-cache json-out grad-accum clip-grad-norm ema-decay"
  [allreduce]="comm min-bytes max-bytes factor warmup iters json-out"
  [membw]="reps no-gpu json-out"
  [cpu-tasks]="data image-size tasks max-image-pixels json-out formats crop crop-scale crop-cat-max
               exif-orientation"
  [overlap]="json-out"
  [scaling]="project trace kernels-json gpus gpus-per-node nvlink-gbs nvlink-us net-gbs net-us base-us
             algo grad-bytes overlap-slowdown ref-step-ms json-out"
  [make-pngs]="out count image-size seed format quality num-classes ignore-index mask-palette"
)

# expect_usage "expected text" [mpirun -np N] ARGS...: exit 2, one error line naming it, no output.
expect_usage() {
  local want=$1 run=(timeout 60); shift
  if [ "$1" = mpirun ]; then run+=($MPIRUN -np "$3"); shift 3; fi
  "${run[@]}" "$BENCH" "$@" > "$T/out" 2> "$T/err"
  local rc=$? n; n=$(grep -c "^cogpu-bench $1: error: " "$T/err")
  if [ $rc -ne 2 ]; then
    echo "FAIL $*: exit code $rc, want 2"; cat "$T/err"; fail=1
  elif [ "$n" -ne 1 ] || ! grep "^cogpu-bench $1: error: " "$T/err" | grep -qF -- "$want"; then
    echo "FAIL $*: want one line 'cogpu-bench $1: error: ...$want':"; cat "$T/err"; fail=1
  elif [ -s "$T/out" ]; then
    echo "FAIL $*: printed on stdout (did it run?):"; head -3 "$T/out"; fail=1
  else
    checked=$((checked + 1))
  fi
}

listed=$("$BENCH" --help | sed -nE 's/^  ([a-z-]+) .*/\1/p' | sort | xargs)
want=$(printf '%s\n' "${!OPTS[@]}" | sort | xargs)
[ "$listed" = "$want" ] || { echo "FAIL cogpu-bench --help lists '$listed', want '$want'"; fail=1; }
"$BENCH" --help | grep -A1 '^  allreduce' | grep -q 'all_reduce_perf' ||
  { echo "FAIL the all_reduce_perf line is not under allreduce"; fail=1; }

for b in $want; do
  checked=0
  timeout 60 "$BENCH" "$b" --help > "$T/help" 2>&1 || { echo "FAIL $b --help: exit $?"; fail=1; }
  sed -n '/^options/,/^training options/p' "$T/help" > "$T/own"  # the benchmark's own options
  for o in ${OPTS[$b]}; do
    grep -qE -- "^  --$o( |$)" "$T/own" || { echo "FAIL $b --help lacks --$o"; fail=1; }
  done
  while read -r name meta; do
    [[ " $(xargs <<< "${OPTS[$b]}") " == *" ${name#--} "* ]] ||
      { echo "FAIL $b --help lists $name, which this test does not know"; fail=1; }
    case $meta in
      "") expect_usage "$name takes no value" "$b" "$name=1" ;;
      FILE|DIR|PREFIX|SRC) expect_usage "$name: missing value" "$b" "$name"
                           expect_usage "$name: empty value" "$b" "$name=" ;;
      *) expect_usage "$name: 'bogus'" "$b" "$name" bogus ;;
    esac
  done < <(grep -oE -- '^  --[a-z0-9-]+( [^ ]+)?' "$T/own")
  expect_usage "unknown option --no-such-option for '$b'" "$b" --no-such-option
  expect_usage "unexpected argument 'stray'" "$b" stray
  echo "PASS $b: --help lists its $(wc -w <<< "${OPTS[$b]}") options;" \
    "$checked usage errors exit 2 naming the option"
done
# Range checks, the checks across options, and the training options of overlap and scaling.
expect_usage "--warmup: 0 is out of range 1..1000000" train --warmup 0
expect_usage "--num-classes: 256 is out of range 1..255" train --num-classes 256
expect_usage "--batch-list: 0 is out of range 1..65536" train --batch-list 8,0
expect_usage "--batch-list: more than 8 values" train --batch-list 1,2,3,4,5,6,7,8,9
expect_usage "--max-bytes: 9G is out of range" allreduce --max-bytes 9G
expect_usage "--max-bytes: 1024 is below --min-bytes 1048576" allreduce --min-bytes 1M \
  --max-bytes 1K
expect_usage "--out: the directory to write is required" make-pngs --count 4
# --json-out is checked before the benchmark runs, and a device is never replaced
expect_usage "--json-out: directory '$T/nodir' of '$T/nodir/x.json' does not exist" \
  membw --reps 1 --json-out "$T/nodir/x.json"
expect_usage "--json-out: '/dev/null' is a character device" membw --reps 1 --json-out /dev/null
expect_usage "--ignore-index: 2 is a class id (--num-classes 4)" make-pngs --out "$T/x" \
  --num-classes 4 --ignore-index 2
expect_usage "--mask-palette: needs --num-classes >= 2" make-pngs --out "$T/x" --mask-palette
expect_usage "--net-gbs: 0 is out of range (0, 1e+06]" scaling --project --net-gbs 0
expect_usage "--trace: needs --project" scaling --trace x.json
expect_usage "--trace: give --trace or --kernels-json, not both" scaling --project --trace a.json \
  --kernels-json b.json
expect_usage "--gpus: 0 is out of range" scaling --project --gpus 8,0
expect_usage "--batch: 0 is out of range 1..65536" overlap --batch 0
expect_usage "--image-size: 36 is not divisible" scaling --model-depth 3 --image-size 36
# train's outputs: refused (several trainings would share them), and not in --help's list;
# --trace-out is taken (the last training's timeline: scaling_validate.sh reads it)
for f in checkpoint-dir metrics-out params-out stats-out prom-out history-out history-csv; do
  for b in scaling overlap; do
    expect_usage "--$f: a training output, not taken by cogpu-bench $b" "$b" --$f "$T/o"
  done
done
expect_usage "--resume: a training output" overlap --resume
expect_usage "--resume: a training output" scaling --resume "$T/ck"
expect_usage "--overwrite-checkpoints: a training output" overlap --overwrite-checkpoints
expect_usage "--checkpoint-every: a training output" scaling --checkpoint-every 2
expect_usage "--keep: a training output" overlap --keep 2
expect_usage "--best-metric: a training output" overlap --best-metric val_loss
grep -qE -- '^  --(metrics-out|checkpoint-dir|resume|keep) ' <<< "$("$BENCH" overlap --help)" &&
  { echo "FAIL overlap --help lists a refused training output"; fail=1; }
grep -q -- "train's outputs are refused" <<< "$("$BENCH" scaling --help)" ||
  { echo "FAIL scaling --help does not say train's outputs are refused"; fail=1; }
[ -e "$T/o" ] || [ -e "$T/ck" ] && { echo "FAIL a refused output was made"; fail=1; }
# On two ranks: every rank exits 2, only rank 0 prints.
expect_usage "--iters: 0 is out of range" mpirun -np 2 allreduce --iters 0
expect_usage "unknown option --bogus for 'scaling'" mpirun -np 2 scaling --project --bogus
# A figure that cannot be measured is null in the JSON, never a made-up -1 (the CPU backend has no
# device memory).
"$BENCH" train --backend cpu --threads-list 1 --windows 1 --steps 2 --batch-list 2 \
  --model-base 4 --model-depth 2 --image-size 32 --json-out "$T/tr.json" > /dev/null ||
  { echo "FAIL a tiny bench train"; fail=1; }
grep -q '"mem_device_gib": null' "$T/tr.json" ||
  { echo "FAIL mem_device_gib not null on the CPU: $(cat "$T/tr.json")"; fail=1; }
# --grad-accum: a step of 3 micro-batches, img/s over all their images
"$BENCH" train --backend cpu --threads-list 1 --windows 1 --steps 2 --batch-list 2 --grad-accum 3 \
  --model-base 4 --model-depth 2 --image-size 32 --json-out "$T/ga.json" > "$T/ga.log" ||
  { echo "FAIL bench train --grad-accum 3"; cat "$T/ga.log"; fail=1; }
grep -q '"grad_accum": 3' "$T/ga.json" &&
  grep -q -- "--grad-accum 3: a step is 3 micro" "$T/ga.log" ||
  { echo "FAIL bench train --grad-accum 3 not reported: $(cat "$T/ga.json")"; fail=1; }
expect_usage "--grad-accum: 0 is out of range 1..1024" train --grad-accum 0
expect_usage "--grad-accum: not with --kernels" train --grad-accum 2 --kernels-json "$T/k"
# --clip-grad-norm: the norm measured each step; said in the header and the JSON
"$BENCH" train --backend cpu --threads-list 1 --windows 1 --steps 2 --batch-list 2 \
  --clip-grad-norm 1e9 --model-base 4 --model-depth 2 --image-size 32 --json-out "$T/cl.json" \
  > "$T/cl.log" || { echo "FAIL bench train --clip-grad-norm"; cat "$T/cl.log"; fail=1; }
grep -q '"clip_grad_norm": 1e+09' "$T/cl.json" &&
  grep -q -- "--clip-grad-norm 1e+09: every step measures" "$T/cl.log" ||
  { echo "FAIL bench train --clip-grad-norm not reported: $(cat "$T/cl.json")"; fail=1; }
expect_usage "--clip-grad-norm: -1 is out of range" train --clip-grad-norm -1
# --ema-decay: the weights' moving average updated each step; said in the header and the JSON
"$BENCH" train --backend cpu --threads-list 1 --windows 1 --steps 2 --batch-list 2 \
  --ema-decay 0.99 --model-base 4 --model-depth 2 --image-size 32 --json-out "$T/em.json" \
  > "$T/em.log" || { echo "FAIL bench train --ema-decay"; cat "$T/em.log"; fail=1; }
grep -q '"ema_decay": 0.99' "$T/em.json" &&
  grep -q -- "--ema-decay 0.99: every step updates a moving average" "$T/em.log" ||
  { echo "FAIL bench train --ema-decay not reported: $(cat "$T/em.json")"; fail=1; }
expect_usage "--ema-decay: 1 is out of range" train --ema-decay 1
[ $fail -eq 0 ] && echo "test_bench_cli: all passed"
exit $fail
