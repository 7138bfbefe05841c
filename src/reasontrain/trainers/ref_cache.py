"""On-disk cache of per-token reference log-probs, keyed by the reference weights and the exact token ids."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


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

    def load(self, key: str) -> dict[str, list] | None:
        path = self.path(key)
        if not path.exists():
            return None
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pydict()

    def save(self, key: str, columns: dict[str, list]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.path(key).with_suffix(".tmp")
        pq.write_table(pa.table(columns), tmp)
        tmp.replace(self.path(key))
