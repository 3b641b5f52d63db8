#!/usr/bin/env bash
# What a CUDA GPU can check and CI (CPU only) cannot (README "On a CUDA GPU"). On a machine with a
# GPU, after `scripts/setup.sh --test`:   bash scripts/gpu_check.sh [OUT]   (default outputs/gpu_check)
#   1. the CUDA tests: the Triton and compiled FlexAttention view-time kernels (forward and backward),
#      Kaleido and 4Real-Video-V2 on CUDA in float32 and under bf16 autocast, against float64 on the
#      CPU; and, at the same time, the main job end to end on CUDA for SMOKE_STEPS steps in each
#      precision (fp32, bf16, fp16, and bf16 compiled): training, checkpoints, evaluation, pictures;
#   2. the pre-flight check that the main job's two local ranks need two GPUs (one line, exit 2);
#   3. the main job's recipe in full on CUDA (one process: the same global batch), timed (FULL=0 skips);
#   4. benchmarks/viewtime_cuda.py (BENCH=0 skips; BENCH=quick for --quick).
# Each step writes OUT/<step>.log and prints one line; the exit status is 1 if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${1:-outputs/gpu_check}
SMOKE_STEPS=${SMOKE_STEPS:-300}
SMOKE_ITEMS=${SMOKE_ITEMS:-32}
mkdir -p "$OUT"
failed=0
MAIN=(experiments/run.py model=kaleido posenc=gta trainer.cpu=false trainer.progress=false)
SMOKE=("${MAIN[@]}" trainer.local_processes=1 "trainer.steps=$SMOKE_STEPS" trainer.checkpoint_every=100
       "eval.num_items=$SMOKE_ITEMS" threads=2)

# step NAME SECONDS COMMAND...: run with a time limit, log to OUT/NAME.log, print one line.
step() {
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  if timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; then
    echo "ok      $name ($((SECONDS - start)) s)"
  else
    echo "FAILED  $name ($((SECONDS - start)) s, exit $?): $(grep -av '^\s*$' "$OUT/$name.log" | tail -n 1 | cut -c1-300)"
    return 1
  fi
}

"$PY" -c "import sys, torch; torch.cuda.is_available() or sys.exit('scripts/gpu_check.sh needs a CUDA GPU: \
torch.cuda.is_available() is False'); print('torch', torch.__version__, torch.cuda.get_device_name())" || exit 1

# 1. CUDA tests beside the main-job smoke runs (16 cores: 4 pytest workers, 2 threads per run). The
# compiled run takes minutes to compile: it goes on beside steps 2-4 and is waited for last.
step smoke_bf16_compiled 900 "$PY" "${SMOKE[@]}" trainer.precision=bf16 trainer.compile=true \
  "hydra.run.dir=$OUT/smoke_bf16_compiled" & compiled=$!
pids=()
step cuda_tests 600 "$PY" -m pytest -q -n 4 packages/attention/tests/test_attention_viewtime_cuda.py \
  packages/attention/tests/test_attention_viewtime_triton.py packages/models/tests/test_models_cuda.py & pids+=($!)
step smoke_fp32 600 "$PY" "${SMOKE[@]}" trainer.precision=fp32 "hydra.run.dir=$OUT/smoke_fp32" & pids+=($!)
step smoke_bf16 600 "$PY" "${SMOKE[@]}" trainer.precision=bf16 "hydra.run.dir=$OUT/smoke_bf16" & pids+=($!)
step smoke_fp16 600 "$PY" "${SMOKE[@]}" trainer.precision=fp16 "hydra.run.dir=$OUT/smoke_fp16" & pids+=($!)
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done

# 2. two local ranks on a machine with fewer GPUs: refused before anything starts
if [ "$("$PY" -c 'import torch; print(torch.cuda.device_count())')" -lt 2 ]; then
  "$PY" "${MAIN[@]}" "hydra.run.dir=$OUT/two_ranks" > "$OUT/two_ranks.log" 2>&1
  code=$?
  if [ $code -eq 2 ] && [ "$(grep -cv '^\s*$' "$OUT/two_ranks.log")" -eq 1 ] && ! grep -q Traceback "$OUT/two_ranks.log"; then
    echo "ok      two_ranks_one_gpu refused: $(cat "$OUT/two_ranks.log")"
  else
    echo "FAILED  two_ranks_one_gpu (exit $code): $(tail -n 2 "$OUT/two_ranks.log" | cut -c1-300)"
    failed=1
  fi
fi

# 3. the recipe in full (training alone on the machine: its time is the figure)
if [ "${FULL:-1}" != 0 ]; then
  step main_job 900 "$PY" "${MAIN[@]}" trainer.local_processes=1 threads=8 "hydra.run.dir=$OUT/main_job" || failed=1
fi

# 4. the view-time backends on this GPU
if [ "${BENCH:-1}" != 0 ]; then
  step viewtime_cuda 600 "$PY" benchmarks/viewtime_cuda.py $([ "${BENCH:-1}" = quick ] && echo --quick) \
    --json "$OUT/viewtime_cuda.json" || failed=1
fi
wait "$compiled" || failed=1
exit $failed
