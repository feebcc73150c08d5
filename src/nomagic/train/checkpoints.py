"""Checkpoints: everything a killed ``nm.fit`` needs to resume exactly — params, optimizer
slots, the best params so far, the epoch and history — in one safetensors file, written
atomically, and tied by a fingerprint to the data and settings that wrote it."""

from __future__ import annotations

import json
from pathlib import Path

from ..engines.base import OptState
from ..errors import ModelFileError, NomagicError
from ..io.safetensors import load_file, save_file
from ..model.params import Params

CHECKPOINT_FILE = "checkpoint.safetensors"
CHECKPOINT_VERSION = "1"


def write_checkpoint(path: Path, fingerprint: str, params: Params, opt_state: OptState,
                      state: dict) -> None:
    tensors = {f"params/{k}": v for k, v in params.items()}
    for slot, arrays in opt_state.slots.items():
        tensors.update({f"slot/{slot}/{k}": v for k, v in arrays.items()})
    if state.get("best") is not None:
        tensors.update({f"best/{k}": v for k, v in state["best"].items()})
    saved = {"epoch": state["epoch"], "history": state["history"], "best_value": state.get("best_value"),
             "wait": state.get("wait", 0), "stopped": state["stopped"]}
    for k in ("stop_reason", "monitor", "plateau"):  # newer entries: a checkpoint without them still reads
        if state.get(k) is not None:
            saved[k] = state[k]
    meta = {"format": "nomagic-checkpoint", "version": CHECKPOINT_VERSION,
            "fingerprint": fingerprint, "step": str(opt_state.step), "state": json.dumps(saved)}
    save_file(path, tensors, meta)


def read_checkpoint(path: Path, fingerprint: str, P: dict, opt, dt):
    tensors, meta = load_file(path)
    if meta.get("format") != "nomagic-checkpoint" or meta.get("version") != CHECKPOINT_VERSION:
        raise ModelFileError(f"{path} is not a nomagic checkpoint of version {CHECKPOINT_VERSION}")
    if meta.get("fingerprint") != fingerprint:
        raise NomagicError(
            f"the checkpoint in {path.parent} was written by a run with other data or settings; "
            "use a new checkpoint directory or delete it to start over")
    try:
        saved = json.loads(meta["state"])
        step = int(meta["step"])
        params = {k: tensors[f"params/{k}"].astype(dt) for k in P}
        slots = {s: Params({k: tensors[f"slot/{s}/{k}"].astype(dt) for k in P})
                 for s in opt.slot_names}
        best = ({k: tensors[f"best/{k}"].astype(dt) for k in P}
                if any(t.startswith("best/") for t in tensors) else None)
    except (KeyError, ValueError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"checkpoint {path} is incomplete: {exc!r}") from None
    for k in P:
        if params[k].shape != P[k].shape:
            raise ModelFileError(f"checkpoint {path} has a misshapen tensor {k!r}")
    state = {"epoch": int(saved["epoch"]), "history": list(saved["history"]), "best": best,
             "best_value": saved["best_value"], "wait": int(saved["wait"]),
             "stopped": bool(saved["stopped"]), "stop_reason": saved.get("stop_reason")}
    for k in ("monitor", "plateau"):
        if saved.get(k) is not None:
            state[k] = saved[k]
    return params, OptState(step, slots), state
