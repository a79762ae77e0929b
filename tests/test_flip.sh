#!/usr/bin/env bash
# train --flip on|off|horizontal|vertical|d4 (test_data checks every mode's pixels and draws):
# on is the default bitwise; each other mode trains other weights, deterministically; d4 on 2
# ranks x 2 equals 1 x 4 within 1e-5; the mode is stored: a checkpoint resumed with --resume DIR
# alone goes on bitwise with it, another mode is refused (exit 2, naming the flag); a value
# outside the list exits 2 naming the flag and the list.
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
CMP=$BUILD/tests/cg_cmp_params
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/clilib.sh" # fail

SMALL="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --progress off
       --threads 1 --seed 3 --train-samples 24 --val-samples 0 --steps 4"
run() { local out=$1; shift; "$@" > "$T/$out.log" 2>&1 || { cat "$T/$out.log"; fail "$*"; }; }
run default $MPIRUN -np 1 $BIN $SMALL --batch 4 --params-out $T/default.bin
for m in on off horizontal vertical d4; do
  run $m $MPIRUN -np 1 $BIN $SMALL --batch 4 --flip $m --params-out $T/$m.bin
done
cmp -s $T/on.bin $T/default.bin || fail "--flip on is not the default"
run one $MPIRUN -np 1 $BIN $SMALL --batch 4 --flip 1 --params-out $T/one.bin # on/off's spelling
cmp -s $T/one.bin $T/on.bin || fail "--flip 1 is not on"
for a in on off horizontal vertical d4; do
  for b in on off horizontal vertical d4; do
    [ "$a" \< "$b" ] || continue
    cmp -s $T/$a.bin $T/$b.bin && fail "--flip $a trained as --flip $b"
  done
done
run d4again $MPIRUN -np 1 $BIN $SMALL --batch 4 --flip d4 --params-out $T/d4again.bin
cmp -s $T/d4.bin $T/d4again.bin || fail "two runs with --flip d4 differ"
run d4two $MPIRUN -np 2 $BIN $SMALL --batch 2 --flip d4 --params-out $T/d4two.bin
echo "--flip d4: np 2 x batch 2 vs np 1 x batch 4:"
$CMP $T/d4two.bin $T/d4.bin 1e-5
echo "ok: on = the default; off, horizontal, vertical, d4 each train other weights;" \
     "deterministic; N ranks = 1 rank"

# stored: a resume goes on with the checkpoint's mode, and refuses another
run h2 $MPIRUN -np 1 $BIN $SMALL --batch 4 --flip horizontal --steps 2 --checkpoint-dir $T/ck
run h4 $MPIRUN -np 1 $BIN train --resume $T/ck --checkpoint-dir $T/ck --steps 4 --progress off \
    --params-out $T/h4.bin
cmp -s $T/h4.bin $T/horizontal.bin || fail "--resume DIR alone did not go on with --flip horizontal"
set +e
$MPIRUN -np 1 $BIN train --resume $T/ck --checkpoint-dir $T/ck --steps 6 --progress off \
    --flip d4 > $T/other.log 2>&1
rc=$?
set -e
[ $rc -eq 2 ] && grep -q -- "--flip" $T/other.log ||
  { cat $T/other.log; fail "another --flip on a resume: exit $rc, want 2 naming --flip"; }
echo "ok: stored; a resume goes on bitwise with it and refuses another ($(grep -m1 -- '--flip' \
  $T/other.log | cut -c1-160))"

for bad in maybe H "horizontal,vertical"; do
  set +e
  $MPIRUN -np 1 $BIN $SMALL --batch 4 --flip "$bad" > $T/bad.log 2>&1
  rc=$?
  set -e
  [ $rc -eq 2 ] && grep -q -- "--flip" $T/bad.log && grep -q "d4" $T/bad.log ||
    { cat $T/bad.log; fail "--flip $bad: exit $rc, want 2 naming the flag and its values"; }
done
echo "ok: bad values exit 2: $(grep -m1 -- '--flip' $T/bad.log)"
echo PASS
