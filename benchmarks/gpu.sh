#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, in one go: the CUDA tests, then the benchmarks that take --device, on cuda.
#
#     bash benchmarks/gpu.sh [results-folder]        # run from the repository root, in an environment with
#                                                   # ember's dependencies (and fastai for the comparisons)
#     STEPS="cuda_tests text_lm_32" bash benchmarks/gpu.sh   # only the steps named
#
# Every step has its own time limit, so one slow step cannot hide the others; each step's output is also written
# to the results folder (default: gpu_results/).
set -u
results=${1:-gpu_results}
mkdir -p "$results"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    case " ${STEPS:-$name} " in *" $name "*) ;; *) return 0 ;; esac
    echo "=== $name ($(date +%T))"
    timeout "$limit" "$@" >"$results/$name.txt" 2>&1
    local rc=$?
    tail -n "${TAIL:-25}" "$results/$name.txt"
    echo "=== $name: exit $rc"
}

"$py" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" || exit 1
step cuda_tests 180 "$py" -m pytest -q -p no:cacheprovider tests/test_cuda.py
step text_lm_32 200 "$py" benchmarks/text.py --device cuda --parts epoch --mb 8 --epoch-tokens 1000000 --runs 3 \
    --ember-variants graphs,eager
step text_lm_fp16 130 "$py" benchmarks/text.py --device cuda --parts epoch --mb 8 --epoch-tokens 1000000 --runs 3 \
    --precision 16-mixed
step overhead 70 "$py" benchmarks/overhead.py --device cuda --runs 3
step vision_e2e 100 "$py" benchmarks/vision_e2e.py --device cuda --runs 1 --no-pipeline
