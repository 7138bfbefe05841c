#!/usr/bin/env bash
# The validation sweeps behind the tiny recipes' defaults (seed 0, scored on `validation` only; test and hard are
# never looked at while tuning). Each line is an ordinary Hydra multirun; every job shares the sampling, grading
# and start evaluation it has in common with the others through `stage_dir` (DPO and RISE sample once, cDPO and RFT
# sample once). Print a sweep's ranked table with `python scripts/sweep_table.py <sweep dir>`.
#
#   bash scripts/tune_tiny.sh preference   # dpo, rise, cdpo (+ its weights-1 ablation), rft
#   bash scripts/tune_tiny.sh online       # oreal (+ without the token RM), grpo, rloo
#   bash scripts/tune_tiny.sh base         # sft and masked_thought from tiny-base: epochs on the fixed 1,600 problems
#   bash scripts/tune_tiny.sh preference2  # second round at the tuned lr: beta, NLL weight, edits per question, gamma
#   bash scripts/tune_tiny.sh online2      # second round at the tuned lr: OREAL's RM lr, RM-only steps, KL
#
# OUT (default outputs/sweeps) holds the sweeps; extra arguments are passed to every job.
set -euo pipefail
group=${1:?usage: tune_tiny.sh preference|online|base|preference2|online2 [overrides...]}
shift
OUT=${OUT:-outputs/sweeps}
common=("data.eval_splits=[validation]" "stage_dir=$OUT/stages" "output_root=$OUT/runs" "$@")
LRS=1e-5,3e-5,1e-4

sweep() {  # sweep <name> <overrides...>
  local name=$1
  shift
  reasontrain -m "$@" "${common[@]}" "hydra.sweep.dir=$OUT/$name"
  python scripts/sweep_table.py "$OUT/$name" --out "$OUT/$name.md"
}

case $group in
  preference)
    sweep dpo-lr recipe=dpo train.lr=$LRS
    sweep rise-lr recipe=rise train.lr=$LRS
    sweep cdpo-lr recipe=cdpo train.lr=$LRS
    sweep cdpo-weights1-lr recipe=cdpo cdpo.token_weights=none train.lr=$LRS
    sweep rft-lr recipe=rft sample.max_questions=1000 train.lr=1e-4,3e-4,1e-3
    ;;
  online)
    sweep oreal-lr recipe=oreal online.policy.lr=$LRS
    sweep oreal-no-rm-lr recipe=oreal oreal.token_rm=false online.policy.lr=$LRS
    sweep grpo-lr recipe=grpo online.policy.lr=$LRS
    sweep rloo-lr recipe=rloo online.policy.lr=$LRS
    ;;
  preference2)
    sweep dpo-beta recipe=dpo preference.beta=0.05,0.3
    sweep rise-nll recipe=rise preference.nll_weight=0,0.2
    sweep rise-edits recipe=rise rise.edits_per_question=3
    sweep cdpo-gamma recipe=cdpo cdpo.gamma=0.5,2
    # RFT on OREAL's sample budget: 448 questions x 8 = 3,584 samples, as OREAL's 128 x 8 (rebalance) + 20 x 16 x 8
    sweep rft-budget-lr recipe=rft sample.max_questions=448 train.lr=1e-4,3e-4,1e-3
    ;;
  online2)
    sweep oreal-lr-high recipe=oreal online.policy.lr=3e-4  # round one's best, 1e-4, sat on the grid's edge
    sweep oreal-rm-lr recipe=oreal oreal.rm.lr=3e-4,3e-3
    sweep oreal-freeze recipe=oreal oreal.actor_freeze_steps=0,6
    # the ablation on OREAL's pairs (no RM, weights 1): which of its two differences the gap comes from
    sweep oreal-no-rm-pairs-lr recipe=oreal oreal.token_rm=false oreal.select=pairs online.policy.lr=3e-5,1e-4
    ;;
  base)
    sweep sft-epochs recipe=sft train.epochs=10,20 eval.before=false
    sweep masked-thought-epochs recipe=masked_thought train.epochs=10,20 eval.before=false
    ;;
  *)
    echo "unknown group $group (preference, online, base, preference2 or online2)" >&2
    exit 2
    ;;
esac
