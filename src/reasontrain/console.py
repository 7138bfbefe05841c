"""What a run prints: INFO lines from rank 0 only, and each warning once per process (progress bars are drawn on
rank 0 by their callers).

Under torchrun every rank runs the same code, so without this every INFO line appears once per rank, and
warnings that libraries raise every step (torch.distributed's deprecation notices under ZeRO-3, thousands per
run) repeat: Python's "default" and even "once" actions forget what they showed whenever the warning filters
change, and libraries change them all the time (every `warnings.catch_warnings` block). So the dedup sits in
`warnings.showwarning`, keyed on the category and the message text, which those changes leave alone.
"""

from __future__ import annotations

import logging
import warnings

from reasontrain.distributed import launch_rank

_shown: set[tuple[type, str]] = set()


def is_rank_zero() -> bool:
    return launch_rank() == 0


class _WarningsAndAbove(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def warn_once() -> None:
    """Show each distinct warning (category and message) once per process; the filters still decide which
    warnings are shown at all. Idempotent."""
    if getattr(warnings.showwarning, "_reasontrain_once", False):
        return
    show = warnings.showwarning

    def show_once(message, category, filename, lineno, file=None, line=None):
        key = (category, str(message))
        if key not in _shown:
            _shown.add(key)
            show(message, category, filename, lineno, file, line)

    show_once._reasontrain_once = True
    warnings.showwarning = show_once


def configure_console(rank: int | None = None) -> None:
    """Apply the policy to the logging that is set up now (Hydra's handlers): call it once the job starts.

    On ranks other than 0 only WARNING and above reach the handlers, and the progress bars of transformers and
    datasets stay quiet; rank 0 prints everything once.
    """
    warn_once()
    rank = launch_rank() if rank is None else rank
    if rank == 0:
        return
    quiet = _WarningsAndAbove()
    for handler in logging.getLogger().handlers:
        handler.addFilter(quiet)
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_warning()
    transformers.utils.logging.disable_progress_bar()
    datasets.utils.logging.set_verbosity_warning()
    datasets.utils.logging.disable_progress_bar()
