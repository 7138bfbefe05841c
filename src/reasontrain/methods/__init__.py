"""Methods: each lists its stages. `RUNNERS` maps the config's `method` to its pipeline."""

from reasontrain.methods import dpo, evaluate, sft

RUNNERS = {"sft": sft.run, "dpo": dpo.run, "eval": evaluate.run}
