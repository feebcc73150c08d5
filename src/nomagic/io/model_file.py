"""Model files: one safetensors file whose metadata holds the JSON topology.

``model.save(path)`` / ``nm.load(path)``. The file is data only (JSON and raw arrays): loading
never executes code. A SHA-256 checksum over all metadata (topology, loss, history) and all
tensors catches tampering and truncation; a version field lets later releases read older files.
"""

from __future__ import annotations

import hashlib
import json
from typing import NamedTuple

import numpy as np

from ..errors import ModelFileError, NomagicError
from ..model.graph import Network
from ..model.losses import get_loss
from ..model.params import Params
from .safetensors import load_file, save_file

FORMAT = "nomagic-model"
VERSION = "1"


def _checksum(meta, tensors) -> str:
    """SHA-256 over every metadata entry but the checksum itself, then every tensor."""
    fields = {k: v for k, v in meta.items() if k != "checksum"}
    h = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k])
        h.update(k.encode())
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


class ModelRecord(NamedTuple):
    """What a model file holds: ``nm.load`` makes a ``Model`` of it."""

    net: Network
    params: Params
    history: list
    loss: str
    info: dict


def save(model, path) -> None:
    """Write ``model`` (a ``Model``: net, params, history, loss, info) to ``path`` atomically
    (the old file, if any, stays until the rename)."""
    if not isinstance(getattr(model, "net", None), Network) or not all(
            hasattr(model, a) for a in ("params", "history", "loss", "info")):
        raise NomagicError(f"save needs a Model (from nm.fit or nm.Model); got {type(model).__name__}")
    network_json = json.dumps(model.net.to_dict(), sort_keys=True)
    tensors = dict(model.params)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "network": network_json,
        "loss": model.loss,
        "history": json.dumps(model.history),
        "info": json.dumps(dict(model.info), default=str),
    }
    meta["checksum"] = _checksum(meta, tensors)
    save_file(path, tensors, meta)


def read(path) -> ModelRecord:
    """Read a model file written by ``Model.save``; raises ``ModelFileError`` if it is damaged."""
    tensors, meta = load_file(path)
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a nomagic model file")
    if meta.get("version") != VERSION:
        raise ModelFileError(f"{path} has format version {meta.get('version')!r}; this nomagic "
                             f"reads version {VERSION}")
    if meta.get("checksum") != _checksum(meta, tensors):
        raise ModelFileError(f"{path} fails its checksum: the file was changed or damaged")
    try:
        net = Network.from_dict(json.loads(meta.get("network", "")))
        history = json.loads(meta.get("history", "[]"))
        info = json.loads(meta.get("info", "{}"))
        loss = get_loss(meta.get("loss", "mse")).name
    except (json.JSONDecodeError, RecursionError, NomagicError) as exc:
        raise ModelFileError(f"{path} holds a malformed model description: {exc}") from None
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history) \
            or not isinstance(info, dict):
        raise ModelFileError(f"{path} holds a malformed training history")
    expected = {s.key: s.shape for s in net.param_specs()}
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ModelFileError(f"{path} does not match its network: missing tensors {missing}, "
                             f"extra tensors {extra}")
    dtypes = {a.dtype for a in tensors.values()}
    if len(dtypes) > 1 or (dtypes and dtypes.pop() not in (np.float32, np.float64)):
        raise ModelFileError(f"{path}: tensors must all be float32 or all float64")
    for k, shape in expected.items():
        if tensors[k].shape != shape:
            raise ModelFileError(f"{path}: tensor {k!r} has shape {tensors[k].shape}, the network "
                                 f"needs {shape}")
        if not np.all(np.isfinite(tensors[k])):
            raise ModelFileError(f"{path}: tensor {k!r} holds NaN or infinity")
    params = Params._adopt({s.key: tensors[s.key] for s in net.param_specs()})
    return ModelRecord(net, params, history, loss, info)
