"""On-disk cache of per-token reference log-probs, keyed by the reference weights and the exact token ids."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

log = logging.getLogger("reasontrain")


def dataset_fingerprint(dataset) -> str:
    """A hash of the token ids of every pair, in order: the same pairs tokenized the same way hash the same."""
    h = hashlib.sha256()
    for row in dataset.select_columns(["prompt_ids", "chosen_ids", "rejected_ids"]):
        h.update(json.dumps([row["prompt_ids"], row["chosen_ids"], row["rejected_ids"]]).encode())
    return h.hexdigest()


class ReferenceCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    @staticmethod
    def key(model_hash: str, data_hash: str) -> str:
        return hashlib.sha256(f"{model_hash}:{data_hash}".encode()).hexdigest()[:20]

    def path(self, key: str) -> Path:
        return self.root / f"{key}.parquet"

    def load(self, key: str, expected_rows: int | None = None) -> dict[str, list] | None:
        """The cached columns, or None when absent. A file that fails to load (cut short, overwritten, another
        layout) or holds another number of rows is a miss: it is reported, removed and recomputed."""
        path = self.path(key)
        if not path.exists():
            return None
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            columns = pq.read_table(path).to_pydict()
            rows = {len(v) for v in columns.values()}
            if not columns or len(rows) != 1 or (expected_rows is not None and rows != {expected_rows}):
                raise ValueError(f"{sorted(rows)} rows where {expected_rows} pairs were expected")
        except (OSError, ValueError, pa.ArrowException) as e:
            log.warning("reference log-prob cache %s is unreadable (%s: %s); recomputing it", path,
                        type(e).__name__, str(e).splitlines()[0][:120] if str(e) else "")
            path.unlink(missing_ok=True)
            return None
        return columns

    def save(self, key: str, columns: dict[str, list]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.path(key).with_suffix(".tmp")
        pq.write_table(pa.table(columns), tmp)
        tmp.replace(self.path(key))
