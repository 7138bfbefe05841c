"""Methods: each lists its stages. `RUNNERS` maps the config's `method` to its pipeline."""

from reasontrain.methods import evaluate, sft

RUNNERS = {"sft": sft.run, "eval": evaluate.run}
