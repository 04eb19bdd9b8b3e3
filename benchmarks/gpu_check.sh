#!/usr/bin/env bash
# The GPU checks of issue 9, as one prepared device call (at most BUDGET = 570 s; a session's device time is 15 min,
# machine start included). The device image has JAX (CUDA), torch, flax, optax and orbax, but not ml_collections or
# ultralytics, and no TensorFlow (jaxyolo's trainer and benchmarks need none). Here, first:
#
#     bash benchmarks/gpu_check.sh --wheels     # downloads those packages' wheels into .whl (git-ignored)
#
# then the device tool's run, from the repo root, with carry [".whl"] and timeout_s 600:
#
#     bash benchmarks/gpu_check.sh
#
# Writes under $OUT (what the device tool brings back), most important first: gpu.txt; bench.txt + RESULTS.md
# (bench_train_step for the first of MODELS, both sides, 2 processes each: the rows to paste into
# benchmarks/RESULTS.md); profile.txt (profile_step --breakdown: where its step's time goes, op by op); digits.txt
# (a 2-epoch digits run on the GPU: the trainer works there); bench_more.txt (the other MODELS, 1 process a side).
# Each step has its own time limit, cut to what is left of the budget, so one that hangs costs its limit and the
# files still come back. On a CPU the same script runs small (MODELS, IMGSZ, BATCH, PRECISION, PY, BUDGET from the
# environment), which is how it is tested before a device call, e.g.
#     PY=.venv/bin/python MODELS=yolov8n-cls,yolov8s-cls IMGSZ=32 BATCH=8 PRECISION=fp32 OUT=/tmp/gc \
#         bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
# The versions of pyproject.toml's test extra (ultralytics) and dependencies (ml_collections); ultralytics' own
# needs that the image lacks: thop and platform (no polars: the benchmark's imports do not use it).
WHEELS=("ultralytics==8.4.190" "ultralytics-thop" "ultralytics-platform" "ml_collections>=1.0")
if [[ "${1:-}" == "--wheels" ]]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    exec env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null python3 -m pip download -q --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        -d .whl "${WHEELS[@]}"
fi
PY=${PY:-python3}
OUT=${OUT:?set OUT, the folder for the results (the device tool sets it)}
MODELS=${MODELS:-yolov8s-cls,yolov8m-cls}
IMGSZ=${IMGSZ:-224}
BATCH=${BATCH:-256}
PRECISION=${PRECISION:-bf16}  # the GPU benchmark's setting; fp32 for the small run on a CPU
mkdir -p "$OUT"
WHEELS_DIR=${WHEELS_DIR:-.whl}  # (the device call carries .whl)
if compgen -G "$WHEELS_DIR/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/jaxyolo-site \
        "$WHEELS_DIR"/*.whl || { echo "installing $WHEELS_DIR/*.whl failed"; exit 1; }
    export PYTHONPATH=/tmp/jaxyolo-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export JAXYOLO_COMPILATION_CACHE=/tmp/jaxyolo-xla JAXYOLO_DATASETS_DIR=/tmp/jaxyolo-datasets

START=$SECONDS
BUDGET=${BUDGET:-570}  # seconds for the whole script: under the device call's 600, so $OUT always comes back

step() {  # step NAME LIMIT_S COMMAND...: run it with a limit (cut to what is left of BUDGET), output to $OUT/NAME.txt
    local name=$1 limit=$2; shift 2
    local left=$((BUDGET - (SECONDS - START) - 5))
    (( limit > left )) && limit=$left
    if (( limit < 20 )); then
        echo "== $name: skipped, ${left} s of the budget left" | tee "$OUT/$name.txt"
        return
    fi
    echo "== $name ($(date -u +%H:%M:%S), limit ${limit} s): $*"
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
    local rc=${PIPESTATUS[0]}
    [[ $rc == 0 ]] || echo "== $name: exit code $rc$([[ $rc == 124 ]] && echo ' (time limit)')" | tee -a "$OUT/$name.txt"
}

# Most important first: the target's model (the first of MODELS) benchmarked and profiled, then the digits run on the
# GPU, then the other models with one process per side.
bf16=(); [[ "$PRECISION" == bf16 ]] && bf16=(--bf16)
first=${MODELS%%,*}
rest=${MODELS#"$first"}; rest=${rest#,}
step gpu 60 sh -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null; \
    \"$PY\" -c 'import jax, jaxlib, flax, optax; print(\"jax\", jax.__version__, \"flax\", flax.__version__, \
    \"optax\", optax.__version__, jax.devices())'"
step bench 240 "$PY" benchmarks/bench_train_step.py --models "$first" --imgsz "$IMGSZ" --batch "$BATCH" "${bf16[@]}" \
    --steps 20 --repeats 3 --processes 2 --results "$OUT/RESULTS.md"
step profile 120 "$PY" benchmarks/profile_step.py --model "$first" --imgsz "$IMGSZ" --batch "$BATCH" "${bf16[@]}" \
    --breakdown
step digits 120 "$PY" -m jaxyolo.train --config experiments/digits.py --config.epochs=2 --workdir /tmp/jaxyolo-digits
[[ -n "$rest" ]] && step bench_more 180 "$PY" benchmarks/bench_train_step.py --models "$rest" --imgsz "$IMGSZ" \
    --batch "$BATCH" "${bf16[@]}" --steps 20 --repeats 3 --processes 1 --results "$OUT/RESULTS.md"
echo "== done $(date -u +%H:%M:%S), $((SECONDS - START)) s"
