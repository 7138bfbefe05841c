"""Methods: each lists its stages. `RUNNERS` maps the config's `method` to its pipeline."""

from reasontrain.methods import cdpo, dpo, evaluate, rft, rise, sft
from reasontrain.methods import oreal

RUNNERS = {"sft": sft.run, "dpo": dpo.run, "rise": rise.run, "eval": evaluate.run, "cdpo": cdpo.run, "rft": rft.run,
           "oreal": oreal.run}
