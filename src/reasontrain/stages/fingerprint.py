"""What a stage key says about an input given by path: its content, never its name.

- A file or folder inside a finished stage folder is named by that stage (`stage:<name>-<key>/<relative path>`):
  a stage's outputs are a function of its key, so the key stands for their content at no cost.
- Any other local file or folder (a model at `model.path`, a data file) is hashed: SHA-256 over every file's
  bytes (hidden files such as locks left out). Hashes are remembered per (path, size, mtime, inode), in this
  process and in `~/.cache/reasontrain/fingerprints.json` (`REASONTRAIN_CACHE` moves it), so a 15 GB model is
  read once, not at every run, and a replaced or edited file is hashed again.
- A name that is not on disk (a Hub id such as `Qwen/Qwen2-7B-Instruct`) is its own fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

_STAGE_FOLDER = re.compile(r"^.+-[0-9a-f]{10}$")
_memory: dict[str, str] = {}


def _cache_file() -> Path:
    root = os.environ.get("REASONTRAIN_CACHE") or Path.home() / ".cache" / "reasontrain"
    return Path(root) / "fingerprints.json"


def _load_disk() -> dict:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _save_disk(entries: dict) -> None:
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(entries))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs re-hashing


def _file_hash(path: Path, disk: dict) -> str:
    st = path.stat()
    ident = f"{path}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
    if ident in _memory:
        return _memory[ident]
    if ident in disk:
        _memory[ident] = disk[ident]
        return disk[ident]
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    _memory[ident] = disk[ident] = digest.hexdigest()
    disk["__dirty__"] = True
    return disk[ident]


def enclosing_stage(path: Path) -> Path | None:
    """The finished stage folder that holds `path` (or is it), if any."""
    for folder in (path, *path.parents):
        if _STAGE_FOLDER.match(folder.name) and (folder / "stage.json").is_file() and (folder / "key.json").is_file():
            return folder
    return None


def fingerprint(path) -> str:
    """A short stable identity of the content at `path` (see the module docstring)."""
    p = Path(str(path)).expanduser()
    if not p.exists():
        return f"name:{path}"
    p = p.resolve()
    stage = enclosing_stage(p)
    if stage is not None:
        rel = p.relative_to(stage).as_posix()
        return f"stage:{stage.name}" + (f"/{rel}" if rel != "." else "")
    disk = _load_disk()
    if p.is_file():
        out = _file_hash(p, disk)
    else:
        digest = hashlib.sha256()
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            rel = f.relative_to(p)
            if any(part.startswith(".") for part in rel.parts):
                continue
            digest.update(f"{rel.as_posix()}\0{_file_hash(f, disk)}\n".encode())
        out = digest.hexdigest()
    if disk.pop("__dirty__", False):
        _save_disk(disk)
    return f"sha256:{out[:16]}"
