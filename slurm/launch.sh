#!/usr/bin/env bash
# Start `reasontrain` on this node of a Slurm job: one torchrun per node (srun starts it on every node), one
# process per GPU, all ranks meeting at a c10d rendezvous on the job's first node.
#
#   srun --ntasks-per-node=1 bash slurm/launch.sh recipe=<name>[/<variant>] [group=option ...] [key=value ...]
#
# Read from Slurm: SLURM_JOB_NODELIST (first node hosts the rendezvous), SLURM_NNODES, SLURM_GPUS_ON_NODE
# (processes per node), SLURM_JOB_ID (rendezvous id and default port). Overrides: MASTER_ADDR, MASTER_PORT,
# NPROC_PER_NODE. Without GPUs it runs DeepSpeed on CPU (DS_ACCELERATOR=cpu, gloo).
set -euo pipefail

cd "${REASONTRAIN_ROOT:-$(dirname "$(readlink -f "$0")")/..}"

: "${SLURM_JOB_ID:?launch.sh runs inside a Slurm job (sbatch/salloc) or with SLURM_* set}"
: "${SLURM_JOB_NODELIST:?SLURM_JOB_NODELIST is not set}"
nnodes="${SLURM_NNODES:-1}"

if [[ -z "${MASTER_ADDR:-}" ]]; then
  if command -v scontrol >/dev/null 2>&1; then
    MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
  elif [[ "$SLURM_JOB_NODELIST" != *"["* ]]; then
    MASTER_ADDR="${SLURM_JOB_NODELIST%%,*}"  # a plain list such as "node1,node2"
  else
    echo "launch.sh: cannot expand SLURM_JOB_NODELIST=$SLURM_JOB_NODELIST without scontrol; set MASTER_ADDR" >&2
    exit 2
  fi
fi
# One port per job, so jobs that share a first node do not collide.
MASTER_PORT="${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}"

gpus="${SLURM_GPUS_ON_NODE:-}"
gpus="${gpus##*:}"  # "a100:8" -> "8"
if [[ -z "$gpus" ]] && command -v nvidia-smi >/dev/null 2>&1; then
  gpus="$(nvidia-smi -L | wc -l)"
fi
nproc="${NPROC_PER_NODE:-${gpus:-1}}"
if [[ -z "$gpus" || "$gpus" == "0" ]]; then
  export DS_ACCELERATOR="${DS_ACCELERATOR:-cpu}"
fi

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export TOKENIZERS_PARALLELISM=false
# DeepSpeed compiles some ops on first use; keep them with the project so every job after the first reuses them.
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$PWD/.cache/torch_extensions}"

echo "launch.sh: node ${SLURM_NODEID:-0}/$nnodes, $nproc processes, rendezvous $MASTER_ADDR:$MASTER_PORT (job $SLURM_JOB_ID)" >&2
exec python -m torch.distributed.run \
  --nnodes "$nnodes" --nproc_per_node "$nproc" \
  --rdzv_backend c10d --rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT" --rdzv_id "$SLURM_JOB_ID" \
  --max_restarts 0 \
  -m reasontrain.cli "$@"
