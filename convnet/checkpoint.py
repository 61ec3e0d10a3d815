"""Reading and writing arrays (+ JSON metadata) as .npz files, atomically.

A file is written to a temporary name in the same directory and renamed over the
target only once complete, so a crash or Ctrl-C mid-write never leaves a truncated
checkpoint behind, and the previous one stays intact.
"""

import json
import os
import tempfile
from pathlib import Path

import numpy as np

META_KEY = "__meta__"


def save_arrays(path, arrays, meta=None):
    """Write {name: array} (and an optional JSON-serialisable ``meta`` dict) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(arrays)
    if meta is not None:
        payload[META_KEY] = np.array(json.dumps(meta))
    handle, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def load_arrays(path):
    """{name: array} from a file written by :func:`save_arrays` (metadata left out)."""
    arrays, _ = load_arrays_and_meta(path)
    return arrays


def load_arrays_and_meta(path):
    """({name: array}, meta dict or None). No pickles are ever loaded."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable convnet .npz file: {exc}") from exc
    meta = arrays.pop(META_KEY, None)
    return arrays, (json.loads(str(meta)) if meta is not None else None)
