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

from ..engines.base import OptState
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
    opt_state: OptState | None = None
    epoch: int = 0
    loop_state: dict = {}


# Tensors that are not params: the optimizer's slots (opt/<slot>/<param>) and early stopping's
# best params (best/<param>). Param keys never hold a "/".
OPT, BEST = "opt/", "best/"


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
    # Added later, each optional: a file without them still reads (and reads as before).
    epoch = getattr(model, "epoch", 0)
    if epoch:
        meta["epoch"] = str(int(epoch))
    opt_state = getattr(model, "opt_state", None)
    if opt_state is not None:
        for slot, arrays in opt_state.slots.items():
            tensors.update({f"{OPT}{slot}/{k}": np.asarray(v) for k, v in arrays.items()})
        meta["opt_step"] = str(int(opt_state.step))
        meta["opt_slots"] = json.dumps(sorted(opt_state.slots))
        optimizer = dict(model.info).get("optimizer")
        if optimizer is not None:
            meta["optimizer"] = json.dumps(optimizer, default=str)
    loop_state = dict(getattr(model, "loop_state", None) or {})
    if loop_state:
        best = loop_state.pop("best", None)
        if best is not None:
            tensors.update({f"{BEST}{k}": np.asarray(v) for k, v in best.items()})
        meta["loop_state"] = json.dumps(loop_state)
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
    extras = {k: tensors.pop(k) for k in [k for k in tensors if k.startswith((OPT, BEST))]}
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
    opt_state, epoch, loop_state = _training_state(path, meta, extras, params, info)
    return ModelRecord(net, params, history, loss, info, opt_state, epoch, loop_state)


def _like_params(path, what: str, arrays: dict, params: Params) -> Params:
    """``arrays`` checked to have the keys, shapes and dtype of ``params``."""
    if set(arrays) != set(params):
        raise ModelFileError(f"{path}: the {what} do not match the params (keys "
                             f"{sorted(set(arrays) ^ set(params))})")
    for k, a in arrays.items():
        if a.shape != params[k].shape or a.dtype != params[k].dtype or not np.all(np.isfinite(a)):
            raise ModelFileError(f"{path}: the {what} tensor {k!r} is misshapen, of another dtype, "
                                 "or holds NaN or infinity")
    return Params._adopt({k: arrays[k] for k in params})


def _training_state(path, meta: dict, extras: dict, params: Params, info: dict):
    """(opt_state, epoch, loop_state) from the optional entries; an older file has none of them:
    no optimizer state, ``info["epochs_run"]`` (or 0) epochs, no loop state."""
    try:
        epoch = int(meta["epoch"]) if "epoch" in meta else int(info.get("epochs_run", 0) or 0)
        opt_state = None
        if "opt_step" in meta:
            slots = json.loads(meta.get("opt_slots", "[]"))
            if not isinstance(slots, list) or not all(isinstance(x, str) for x in slots):
                raise ValueError("opt_slots")
            per = {s: {k[len(OPT) + len(s) + 1:]: v for k, v in extras.items() if k.startswith(f"{OPT}{s}/")}
                   for s in slots}
            opt_state = OptState(int(meta["opt_step"]),
                                 {s: _like_params(path, f"optimizer slot {s!r}", per[s], params) for s in slots})
        elif any(k.startswith(OPT) for k in extras):
            raise ValueError("optimizer tensors without a step")
        loop_state = json.loads(meta.get("loop_state", "{}"))
        if not isinstance(loop_state, dict):
            raise ValueError("loop_state")
        best = {k[len(BEST):]: v for k, v in extras.items() if k.startswith(BEST)}
        if best:
            loop_state["best"] = _like_params(path, "best params", best, params)
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path} holds a malformed training state: {exc}") from None
    if epoch < 0:
        raise ModelFileError(f"{path} holds a malformed training state: epoch {epoch}")
    return opt_state, epoch, loop_state
