#!/usr/bin/env bash
# The GPU check: fits in 8 minutes of one GPU. From the repository root:
#
#   bash scripts/gpu_check.sh                      # on the GPU machine; results in $OUT (default gpu_check_out/)
#   bash scripts/gpu_check.sh --download-wheels    # beforehand, on a machine with a package index: fills .whl/
#
# 1. Makes the project importable WITHOUT touching the machine's torch: if the stack is not importable already,
#    the wheels in $WHEELS (default .whl/) are installed with --no-deps into a private folder put on PYTHONPATH,
#    and the project itself is used from src/. No package index is needed on the GPU machine.
# 2. SFT trainer against TRL's SFTTrainer, then the preference trainer (token weights on) against TRL's
#    DPOTrainer, in bf16 on a randomly initialised Qwen2.5-0.5B-shaped model, same batches:
#    tokens/s/GPU and MFU (scripts/bench_gpu_trainers.py).
# 3. One tiny recipe end to end on CUDA (Masked Thought from the shipped tiny-base, shortened), with its
#    before/after table.
#
# --download-wheels picks the pinned packages the recipes import (trl, datasets, hydra-core, omegaconf,
# math-verify) and everything they need, at the versions installed here, minus torch, the CUDA libraries and what
# the GPU image ships already (GPU_IMAGE_HAS below), as wheels for CPython $PY_VERSION on manylinux x86-64.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WHEELS=${WHEELS:-$ROOT/.whl}
PY_VERSION=${PY_VERSION:-3.12}
OUT=${OUT:-$ROOT/gpu_check_out}
PY=${PYTHON:-python3}

# What the GPU image ships (its package list, 2026-11): these are never downloaded, so its builds stay in use.
GPU_IMAGE_HAS="accelerate aiohttp anyio certifi charset-normalizer click filelock fsspec h11 hf-xet httpcore httpx
huggingface-hub idna jinja2 markupsafe mpmath msgpack networkx ninja numpy packaging pandas peft pillow psutil
py-cpuinfo pyarrow pyyaml regex requests rich safetensors setuptools sympy tokenizers torch tqdm transformers
triton typing-extensions urllib3 xxhash protobuf python-dateutil six pytz tzdata multidict yarl frozenlist
aiosignal attrs propcache aiohappyeyeballs shellingham typer markdown-it-py mdurl pygments"

if [[ "${1:-}" == "--download-wheels" ]]; then
  mkdir -p "$WHEELS"
  # The dependency closure of what the recipes import, from this machine's installed metadata.
  NEEDED=$($PY - "$GPU_IMAGE_HAS" "$PY_VERSION" <<'EOF'
import re, sys
from importlib import metadata
from packaging.requirements import Requirement
have = {n.lower() for n in sys.argv[1].split()}
target = {"python_version": sys.argv[2], "python_full_version": sys.argv[2] + ".0", "sys_platform": "linux",
          "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
          "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
todo, seen = ["trl", "datasets", "hydra-core", "omegaconf", "math-verify"], {}
while todo:
    name = norm(todo.pop())
    if name in seen or name in have or name.startswith("nvidia-"):
        continue
    dist = metadata.distribution(name)
    seen[name] = dist.version
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(target):
            todo.append(req.name)
print(" ".join(f"{n}=={v}" for n, v in sorted(seen.items())))
EOF
)
  echo "downloading for CPython $PY_VERSION: $NEEDED"
  for spec in $NEEDED; do
    if ! $PY -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$WHEELS" "$spec" 2>/dev/null; then
      # No wheel on the index (an sdist only, e.g. antlr4-python3-runtime): build a pure-Python one here.
      $PY -m pip wheel -q --no-deps -w "$WHEELS" "$spec"
    fi
  done
  du -sh "$WHEELS"
  echo "carry $WHEELS to the GPU machine (it must stay under the transfer limit) and run: bash scripts/gpu_check.sh"
  exit 0
fi

mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
START=$(date +%s)
step() { echo; echo "== $1 ($(( $(date +%s) - START )) s in)"; }

step "environment"
TORCH_BEFORE=$($PY -c "import torch; print(torch.__version__)")
if ! $PY -c "import trl, datasets, hydra, omegaconf, math_verify" 2>/dev/null; then
  if ! compgen -G "$WHEELS/*.whl" >/dev/null; then
    echo "gpu_check: the stack is not importable and $WHEELS holds no wheels:" \
         "run 'bash scripts/gpu_check.sh --download-wheels' on a machine with a package index first" >&2
    exit 2
  fi
  SITE=/tmp/reasontrain-site
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH}
TORCH_AFTER=$($PY -c "import torch; print(torch.__version__)")
[[ "$TORCH_BEFORE" == "$TORCH_AFTER" ]] || { echo "gpu_check: torch changed ($TORCH_BEFORE -> $TORCH_AFTER)" >&2; exit 2; }
$PY - <<'EOF'
import torch, transformers, trl, reasontrain
assert torch.cuda.is_available(), "torch sees no GPU"
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), transformers {transformers.__version__}, "
      f"trl {trl.__version__}, GPU {torch.cuda.get_device_name(0)}, reasontrain from {reasontrain.__file__}")
EOF

step "SFT trainer vs TRL SFTTrainer (bf16, Qwen2.5-0.5B shape)"
timeout 170 $PY scripts/bench_gpu_trainers.py --trainer sft --steps 20 --json "$OUT/sft.json"

step "preference trainer, token weights on, vs TRL DPOTrainer (bf16, Qwen2.5-0.5B shape)"
timeout 170 $PY scripts/bench_gpu_trainers.py --trainer preference --steps 15 --batch 4 --json "$OUT/preference.json"

step "tiny recipe end to end on CUDA: masked_thought, 150 steps"
RUNS=${RUNS:-/tmp/reasontrain-gpu-check}
timeout 120 $PY -m reasontrain.cli recipe=masked_thought train.max_steps=150 train.bf16=true \
  output_root="$RUNS" run_name=gpu-check
cp "$RUNS/masked_thought/gpu-check/metrics.json" "$OUT/recipe_metrics.json"

step "done"
