"""``nm.fit``: mini-batch training with validation, early stopping, regularisation, gradient
clipping, a progress bar and checkpoints that make a killed run resume exactly."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..engines import get_engine
from ..errors import InvalidInputError, NomagicError
from ..model.graph import Network
from ..model.losses import get_loss
from ..model.params import Params, as_dtype, check_params
from ..model.validation import check_inputs, check_targets
from .checkpoints import CHECKPOINT_FILE, read_checkpoint, write_checkpoint
from .model import Model, evaluate_outputs
from .optimizers import get_optimizer
from .progress import ProgressBar


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    patience: int = 5
    monitor: str | None = None  # "val_loss" when there is validation data, else "loss"
    min_delta: float = 0.0
    restore_best: bool = True


def _check_int(value, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidInputError(f"{what} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _check_nonneg(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) \
            or value < 0:
        raise InvalidInputError(f"{what} must be a number >= 0; got {value!r}")
    return float(value)


def _fingerprint(parts: Mapping[str, Any], arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for a in arrays:
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def fit(net: Network, X, Y, *, loss: str = "mse", optimizer="adam", epochs: int = 10,
        batch_size: int = 32, seed: int = 0, engine: str = "tensor", dtype: str | None = None,
        params: Mapping[str, np.ndarray] | None = None, validation_data=None,
        validation_split: float = 0.0, early_stopping: int | EarlyStopping | None = None,
        l1: float = 0.0, l2: float = 0.0, clip_norm: float | None = None,
        checkpoint: str | os.PathLike | None = None, shuffle: bool = True,
        verbose: bool | None = None, truncate: int | None = None, **engine_options) -> Model:
    """Train ``net`` on (X, Y) and return a ``Model``.

    Mini-batches are drawn from a permutation seeded by (seed, epoch), so a run is fully
    determined by its arguments, and ``checkpoint=DIR`` can resume a killed run exactly.
    The penalty is ``l1·Σ|w| + l2·Σw²`` over weights (biases are not penalised);
    ``clip_norm`` rescales the gradient when its global L2 norm is larger.
    """
    if not isinstance(net, Network):
        raise InvalidInputError(f"fit needs a Network as first argument; got {type(net).__name__}")
    loss_fn = get_loss(loss)
    opt = get_optimizer(optimizer)
    eng = get_engine(engine)
    epochs = _check_int(epochs, "epochs")
    batch_size = _check_int(batch_size, "batch_size")
    seed = _check_int(seed, "seed", 0)
    l1, l2 = _check_nonneg(l1, "l1"), _check_nonneg(l2, "l2")
    if clip_norm is not None and (_check_nonneg(clip_norm, "clip_norm") == 0):
        raise InvalidInputError("clip_norm must be positive")
    if isinstance(early_stopping, bool):
        raise InvalidInputError("early_stopping must be a patience (int) or nm.EarlyStopping(...)")
    if isinstance(early_stopping, (int, np.integer)):
        early_stopping = EarlyStopping(patience=_check_int(early_stopping, "early_stopping"))
    if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        raise InvalidInputError("early_stopping must be a patience (int) or nm.EarlyStopping(...)")

    # params and dtype
    if params is not None:
        P = check_params(net, params, dtype)
        dt = next(iter(P.values())).dtype if P else as_dtype(dtype or "float32")
        P = {k: np.array(v, dtype=dt) for k, v in P.items()}
    else:
        dt = as_dtype(dtype or "float32")
        P = dict(net.init(seed=seed, dtype=dt))

    # data
    X = check_inputs(net, X, dt)
    Y = check_targets(net, loss_fn, Y, X, dt)
    if validation_data is not None and validation_split:
        raise InvalidInputError("give validation_data or validation_split, not both")
    Xv = Yv = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise InvalidInputError("validation_data must be a pair (X_val, Y_val)")
        Xv = check_inputs(net, validation_data[0], dt)
        Yv = check_targets(net, loss_fn, validation_data[1], Xv, dt)
    elif validation_split:
        if isinstance(validation_split, bool) or not isinstance(validation_split, float) or \
                not 0 < validation_split < 1:
            raise InvalidInputError(f"validation_split must lie in (0, 1); got {validation_split!r}")
        n_val = int(round(len(X) * validation_split))
        if n_val < 1 or n_val >= len(X):
            raise InvalidInputError(f"validation_split={validation_split} leaves no data on one side "
                                    f"of {len(X)} samples")
        X, Xv, Y, Yv = X[:-n_val], X[-n_val:], Y[:-n_val], Y[-n_val:]
    monitor = None
    if early_stopping is not None:
        monitor = early_stopping.monitor or ("val_loss" if Xv is not None else "loss")
        if monitor not in ("loss", "val_loss") or (monitor == "val_loss" and Xv is None):
            raise InvalidInputError(f"early stopping cannot monitor {monitor!r}: use 'loss', or "
                                    "'val_loss' with validation data")

    # state: fresh, or resumed from a checkpoint
    state = {"epoch": 0, "history": [], "best": None, "best_value": None, "wait": 0,
             "stopped": False}
    opt_state = opt.init(P)
    ckpt_path = None
    if checkpoint is not None:
        ckpt_dir = Path(checkpoint)
        if ckpt_dir.exists() and not ckpt_dir.is_dir():
            raise InvalidInputError(f"checkpoint must be a directory; {ckpt_dir} is a file")
        ckpt_path = ckpt_dir / CHECKPOINT_FILE
        fingerprint = _fingerprint(
            {"net": net.to_dict(), "loss": loss_fn.name, "optimizer": opt.config(),
             "batch_size": batch_size, "seed": seed, "dtype": dt.name, "l1": l1, "l2": l2,
             "clip_norm": clip_norm, "truncate": truncate, "shuffle": shuffle, "engine": engine,
             "validation_split": validation_split, "early_stopping": repr(early_stopping),
             "options": repr(sorted(engine_options.items()))},
            [X, Y] + ([Xv, Yv] if Xv is not None else []) + [P[k] for k in sorted(P)])
        if ckpt_path.exists():
            P, opt_state, state = read_checkpoint(ckpt_path, fingerprint, P, opt, dt)

    trainer = eng.Trainer(net, P, opt, opt_state, loss_fn, l1=l1, l2=l2, clip_norm=clip_norm,
                          truncate=truncate, **engine_options)
    n = len(X)
    batch_size = min(batch_size, n)
    n_batches = -(-n // batch_size)
    history = state["history"]
    try:
        if ckpt_path is not None:  # created only once every argument has been checked
            ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        for epoch in range(state["epoch"], epochs):
            if state["stopped"]:
                break
            t0 = time.perf_counter()
            if shuffle:
                order = np.random.default_rng([seed, epoch]).permutation(n)
                Xe, Ye = X[order], Y[order]
            else:
                Xe, Ye = X, Y
            total = 0.0
            bar = ProgressBar(n_batches, f"epoch {epoch + 1}/{epochs}", enabled=verbose)
            for start in range(0, n, batch_size):
                xb, yb = Xe[start:start + batch_size], Ye[start:start + batch_size]
                value = trainer.train_batch(xb, yb)
                if not np.isfinite(value):
                    raise NomagicError(
                        f"training diverged at epoch {epoch + 1} (loss {value}); lower the "
                        "learning rate, clip gradients (clip_norm=1.0) or scale the inputs")
                total += value * len(xb)
                bar.update(1, loss=total / min(start + batch_size, n))
            record: dict[str, Any] = {"epoch": epoch + 1, "loss": total / n}
            if Xv is not None:
                for k, v in evaluate_outputs(trainer.predict(Xv), Yv, loss_fn).items():
                    record[f"val_{k}"] = v
            record["seconds"] = time.perf_counter() - t0
            bar.close("  ".join(f"{k} {v:.4g}" for k, v in record.items()
                                if k not in ("epoch", "seconds")))
            history.append(record)
            state["epoch"] = epoch + 1
            if early_stopping is not None:
                value = record[monitor]
                if state["best_value"] is None or value < state["best_value"] - early_stopping.min_delta:
                    state["best_value"], state["wait"] = value, 0
                    state["best"] = dict(trainer.params())
                else:
                    state["wait"] += 1
                    if state["wait"] >= early_stopping.patience:
                        state["stopped"] = True
            if ckpt_path is not None:
                write_checkpoint(ckpt_path, fingerprint, trainer.params(), trainer.opt_state(),
                                  state)
        final = trainer.params()
        if early_stopping is not None and early_stopping.restore_best and state["best"] is not None \
                and state["stopped"]:
            final = Params(state["best"])
    finally:
        trainer.close()
    info = {"optimizer": opt.config(), "epochs_run": state["epoch"], "stopped_early": state["stopped"],
            "engine": engine, "dtype": dt.name}
    return Model(net, final, list(history), loss_fn.name, info)
