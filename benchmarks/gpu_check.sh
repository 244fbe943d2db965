#!/usr/bin/env bash
# One pass of device checks on a GPU machine: the test suite on CUDA (in the background), a bf16 MR distillation
# from the teacher cache, the labelling throughput, a run with a transfer set, and float32 for comparison.
#
#   TEACHER=DIR DATA=DIR/mr TRANSFER=SET.parquet OUT=results/ bash benchmarks/gpu_check.sh
#
# TEACHER: a fine-tuned MR teacher (e.g. $XKD_CACHE_DIR/teachers/mr--sentence-transformers--all-MiniLM-L6-v2--*);
# DATA: MR's train/validation/test.tsv; TRANSFER: a saved transfer set (`xkd augment --task mr --augment tang
# --augment-factor 20 --out SET.parquet`). Each step has its own time limit, so one slow step cannot eat the rest.
set -u
OUT=${OUT:-gpu-check}; mkdir -p "$OUT"
T0=$(date +%s); say() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
R=${RUNS:-/tmp/xkd-gpu-runs}; mkdir -p "$R"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch, transformers, accelerate; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'accelerate', accelerate.__version__)"
say "pytest (background)"
( timeout "${PYTEST_S:-470}" python -m pytest -q -p no:cacheprovider --durations=15 > "$OUT/pytest.txt" 2>&1; echo "pytest rc $?" >> "$OUT/pytest.txt" ) &
tests=$!
common=(--task mr --data-dir "$DATA" --teacher "$TEACHER" --student bert-k --student-layers 2 --method universal
        --seed 42 --no-progress --no-latency --overwrite)
say "1. bf16, gold, 3 epochs (labels the cache on the GPU first)"
timeout 150 xkd distill "${common[@]}" --precision bf16 --output-dir "$R/bf16-gold" > "$OUT/bf16-gold.log" 2>&1; say "rc $?"
say "2. labelling throughput"
timeout 110 python benchmarks/labelling.py --teacher "$TEACHER" --texts 152893 --texts-file "$TRANSFER" \
    > "$OUT/labelling.log" 2>&1; say "rc $?"
say "3. bf16, gold + the transfer set, 1 epoch"
timeout 240 xkd distill "${common[@]}" --precision bf16 --transfer "$TRANSFER" --epochs 1 \
    --output-dir "$R/bf16-transfer" > "$OUT/bf16-transfer.log" 2>&1; say "rc $?"
say "4. float32, gold, 3 epochs (the cache reused)"
timeout 100 xkd distill "${common[@]}" --precision no --output-dir "$R/fp32-gold" > "$OUT/fp32-gold.log" 2>&1; say "rc $?"
for r in bf16-gold bf16-transfer fp32-gold; do [ -f "$R/$r/summary.json" ] && cp "$R/$r/summary.json" "$OUT/summary-$r.json"; done
say "waiting for pytest"
wait $tests
tail -n 25 "$OUT/pytest.txt"
say "done"
