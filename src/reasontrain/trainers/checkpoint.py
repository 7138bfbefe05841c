"""Checkpoint I/O for every trainer: crash-safe step folders, rotation, RNG states and the resume point.

Two writers share it. The online trainer writes `checkpoints/step-N/` itself: under a temporary name, renamed
once every rank has written its part (`write_step`), so a folder with `state.json` is always whole.
For the `transformers.Trainer`-based trainers (SFT, preference, cDPO's models), transformers writes
`checkpoints/checkpoint-N/` in place, file by file, so a crash (SIGKILL, a full disk) can leave a folder that its own
resume logic picks as the newest and then fails on. Here a checkpoint counts only once every
rank has finished writing it: `CompletionMarker` (a callback) writes `.complete` after a barrier, and the resume
point is the newest folder that has it. Folders without it are incomplete: they are removed, with a warning naming
them, before training continues from the newest complete one. A full disk becomes one line that names the folder
and the space left.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import re
import shutil
import time
from pathlib import Path
from typing import Callable

from transformers import TrainerCallback

from reasontrain.distributed import barrier, dist_info

log = logging.getLogger("reasontrain")

MARKER = ".complete"
# Tests only: seconds to wait before marking a checkpoint complete, so a test can kill a run mid-checkpoint.
DELAY_ENV = "REASONTRAIN_CHECKPOINT_DELAY"
_STEP = re.compile(r"^checkpoint-(\d+)$")


class DiskFull(RuntimeError):
    pass


def _step(path: Path) -> int:
    return int(_STEP.match(path.name).group(1))


def _legacy_complete(folder: Path) -> bool:
    """A checkpoint written before markers existed: trainer_state.json (written last) parses."""
    try:
        json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def checkpoint_folders(ckpt_dir: Path) -> list[Path]:
    """Every `checkpoint-N` folder under `ckpt_dir`, oldest first."""
    if not Path(ckpt_dir).is_dir():
        return []
    return sorted((p for p in Path(ckpt_dir).iterdir() if p.is_dir() and _STEP.match(p.name)), key=_step)


def is_complete(folder: Path) -> bool:
    if (folder / MARKER).exists():
        return True
    # Folders of this checkout always get a marker; one without it next to marked ones is a crashed write.
    return not any((p / MARKER).exists() for p in folder.parent.iterdir()) and _legacy_complete(folder)


def resume_point(ckpt_dir: Path, remove_incomplete: bool = True) -> Path | None:
    """The newest complete checkpoint under `ckpt_dir`, or None. Incomplete ones newer than it are removed (when
    `remove_incomplete`, which only rank 0 should do), each with a warning: they hold no usable state, and left in
    place transformers' rotation could delete the complete one instead."""
    folders = checkpoint_folders(ckpt_dir)
    complete = [p for p in folders if is_complete(p)]
    best = complete[-1] if complete else None
    for p in folders:
        if p not in complete:
            log.warning("checkpoint %s is incomplete (the run stopped while writing it); %s", p,
                        "removing it" if remove_incomplete else "skipping it")
            if remove_incomplete:
                shutil.rmtree(p, ignore_errors=True)
    return best


def cache_on(folder: Path) -> None:
    """Set `use_cache: true` in a checkpoint's config.json and generation_config.json: transformers saves what
    training set (off), and anyone generating from the checkpoint would then recompute every token."""
    for name in ("config.json", "generation_config.json"):
        path = folder / name
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(config, dict) and config.get("use_cache") is not True:
            config["use_cache"] = True
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, path)


class CompletionMarker(TrainerCallback):
    """Marks `checkpoint-N/` complete once every rank has written its part (on_save runs after the whole save),
    with the KV cache switched back on in its configs."""

    def on_save(self, args, state, control, **kwargs):
        barrier()
        if os.environ.get(DELAY_ENV):  # fault injection: widen the window in which a crash leaves it incomplete
            time.sleep(float(os.environ[DELAY_ENV]))
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                cache_on(folder)
                tmp = folder / f"{MARKER}.tmp"
                tmp.write_text(json.dumps({"step": state.global_step}))
                os.replace(tmp, folder / MARKER)
        return control


def is_disk_full(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    text = str(error)
    # torch.save reports a full disk as a failed write in its zip writer.
    return "No space left" in text or "unexpected pos" in text or "file write failed" in text


def disk_full_error(folder: Path, error: BaseException) -> DiskFull:
    try:
        free = shutil.disk_usage(folder).free
        space = f"{free / 2**20:.1f} MiB free"
    except OSError:
        space = "free space unknown"
    return DiskFull(f"disk full while writing {folder} ({space}): free some space and run the same command again; "
                    f"it resumes from the last complete checkpoint ({type(error).__name__}: "
                    f"{str(error).splitlines()[0][:120]})")


def mean_logged_loss(log_history: list[dict]) -> float | None:
    """The training loss averaged over every step logged, before and after any resume (each logged value is the
    mean over the steps since the previous log, so it is weighted by that span)."""
    total, steps, previous = 0.0, 0, 0
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            span = max(1, entry["step"] - previous)
            total, steps, previous = total + entry["loss"] * span, steps + span, entry["step"]
    return total / steps if steps else None


# -- step folders of the online trainer --------------------------------------------------------------------------
STEP_PREFIX = "step-"
STATE_FILE = "state.json"


class ResumeError(FileNotFoundError):
    """A resume path that does not exist or holds no checkpoint."""


def _step_number(folder: Path) -> int:
    return int(folder.name[len(STEP_PREFIX):])


def step_folders(ckpt_dir: Path) -> list[Path]:
    """Complete `step-N` folders (with their state file) under `ckpt_dir`, oldest first."""
    folder = Path(ckpt_dir)
    if not folder.is_dir():
        return []
    done = [p for p in folder.glob(f"{STEP_PREFIX}*") if p.is_dir() and (p / STATE_FILE).exists()
            and p.name[len(STEP_PREFIX):].isdigit()]
    return sorted(done, key=_step_number)


def find_step(path: str | Path, option: str = "online.resume") -> Path:
    """The checkpoint at `path` (a `step-N` folder) or the newest one inside it; a one-line error otherwise."""
    path = Path(path)
    if not path.exists():
        raise ResumeError(f"{option}: {path} does not exist")
    if (path / STATE_FILE).exists():
        return path
    found = step_folders(path)
    if not found:
        raise ResumeError(f"{option}: {path} holds no checkpoint (no {STEP_PREFIX}N/{STATE_FILE})")
    return found[-1]


def step_resume_point(resume: str | None, own_dir: Path) -> Path | None:
    """Where training continues: the newer of the given `resume` checkpoint (it must exist) and the run's own
    last one, so re-running the same command after a crash never goes back to the given step."""
    own = step_folders(own_dir)
    own = own[-1] if own else None
    if not resume:
        return own
    given = find_step(resume)

    def step(ckpt: Path) -> int:
        return int(json.loads((ckpt / STATE_FILE).read_text())["step"])

    return own if own is not None and step(own) > step(given) else given


def write_step(ckpt_dir: Path, step: int, write: Callable[[Path], None], state: dict, keep: int) -> Path:
    """`ckpt_dir/step-N/`: every rank runs `write(tmp)` into a temporary folder and saves its RNG states there;
    rank 0 adds the state file, renames it into place and keeps the newest `keep` step folders."""
    import torch

    rank = dist_info()[0]
    final = Path(ckpt_dir) / f"{STEP_PREFIX}{step}"
    tmp = Path(ckpt_dir) / f".tmp-{STEP_PREFIX}{step}"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    try:
        write(tmp)
        torch.save(rng_state(), tmp / f"rng-rank{rank}.pt")
    except (OSError, RuntimeError) as e:
        if is_disk_full(e):
            raise disk_full_error(Path(ckpt_dir), e) from None
        raise
    barrier()
    if rank == 0:
        (tmp / STATE_FILE).write_text(json.dumps({"step": step, **state}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in step_folders(ckpt_dir)[:-max(1, keep)]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def read_step(folder: Path) -> dict:
    """The state file of a step folder, with this rank's RNG states restored."""
    rng_file = Path(folder) / f"rng-rank{dist_info()[0]}.pt"
    if rng_file.exists():
        import torch

        set_rng_state(torch.load(rng_file, weights_only=True))
    return json.loads((Path(folder) / STATE_FILE).read_text())


def rng_state() -> dict:
    """Python, NumPy, torch (and CUDA) RNG states, as tensors and JSON that `torch.load(weights_only=True)` reads."""
    import numpy as np
    import torch

    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": json.dumps(random.getstate()),
             "numpy": torch.from_numpy(np_state[1].astype("int64")), "numpy_pos": int(np_state[2])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype("uint32"), state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_weights(module, folder: Path) -> None:
    """Every `*.safetensors` of `folder` into `module` (tied output embeddings may be absent)."""
    from safetensors.torch import load_file

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise ResumeError(f"resume: no weights in {folder}")
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    missing, unexpected = module.load_state_dict(state, strict=False)
    tied = {k for k in missing if k.endswith("lm_head.weight")} if getattr(module.config, "tie_word_embeddings",
                                                                          False) else set()
    if set(missing) - tied or unexpected:
        raise ResumeError(f"resume: weights in {folder} do not match the model "
                          f"(missing {sorted(set(missing) - tied)[:3]}, unexpected {sorted(unexpected)[:3]})")
    if tied:
        module.tie_weights()
