"""The handlers ``nm.fit`` puts in its loop, in this order: training metrics, validation, your
callbacks, history, early stopping, checkpoints, the progress bar. Each is an ``nm.Callback``
like yours; assemble your own ``nm.Loop`` from them."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..errors import InvalidInputError, NomagicError
from ..model.validation import check_inputs, check_targets
from . import metrics as _metrics
from .checkpoints import CHECKPOINT_FILE, read_checkpoint, write_checkpoint
from .loop import Callback, Loop
from .progress import ProgressBar
from .schedules import ReduceLROnPlateau


class TrainingMetrics(Callback):
    """The epoch's training metrics, from each batch's outputs before its optimizer step.

    Accuracy (``cross_entropy``, ``binary_cross_entropy``) and ``mae`` (``mse``) are always
    reported; ``metrics`` adds functions ``fn(y_true, y_pred) -> float`` (a list, named by
    ``__name__``, or a dict name -> fn). As in Keras, a metric of the epoch is the average of
    its value on the epoch's batches, weighted by batch size, each batch judged by the params
    the step found (so the epoch's first batches count with older params than its last).
    """

    def __init__(self, metrics=None) -> None:
        self.user_metrics = metrics
        self.metrics: list[_metrics.Metric] = []
        self.needs_outputs = False

    def on_fit_start(self, loop: Loop) -> None:
        self.metrics = _metrics.resolve_metrics(loop.loss.name, self.user_metrics)
        kinds = {m.kind for m in self.metrics}
        self.needs_outputs = ("logits" if kinds == {"accuracy"} else True) if kinds else False
        self._acc = "accuracy" in kinds
        self._bin = "binary_accuracy" in kinds
        self._mae = "mae" in kinds
        self._user = [m for m in self.metrics if m.kind == "user"]
        Y = loop.Y
        self._pred = np.empty(Y.shape[:-1], np.intp) if self._acc else None
        self._labels = Y.argmax(axis=-1) if self._acc else None  # once a fit; permuted each epoch
        self._above = np.empty(Y.shape, bool) if self._bin else None
        self._out = np.empty(Y.shape, Y.dtype) if self._mae else None

    def on_epoch_start(self, loop: Loop) -> None:
        self._sums = [0.0] * len(self._user)

    def on_batch_end(self, loop: Loop) -> None:
        out, stop = loop.outputs, loop.seen
        if out is None:
            return
        start = stop - len(loop.yb)
        if self._acc:  # the method, not np.argmax: a batch of 32 rows costs a few µs either way
            out.argmax(-1, self._pred[start:stop])
        if self._bin:
            np.greater_equal(out, 0.5, out=self._above[start:stop])
        if self._mae:
            self._out[start:stop] = out
        if self._user:
            yb, m = loop.yb, stop - start
            for i, metric in enumerate(self._user):
                self._sums[i] += _metrics.call_user(metric, yb, out) * m

    def on_epoch_end(self, loop: Loop) -> None:
        seen, Ye = loop.seen, loop.Y_epoch[:loop.seen]
        for metric in self.metrics:
            if metric.kind == "accuracy":
                labels = self._labels if loop.order is None else self._labels[loop.order]
                value = float(np.mean(self._pred[:seen] == labels[:seen]))
            elif metric.kind == "binary_accuracy":
                value = float(np.mean(self._above[:seen] == (Ye >= 0.5)))
            elif metric.kind == "mae":
                value = float(np.mean(np.abs(self._out[:seen] - Ye)))
            else:
                value = self._sums[self._user.index(metric)] / seen
            loop.record[metric.name] = value


class Validation(Callback):
    """After each epoch: ``val_loss`` and ``val_<metric>`` on (X, Y) with the current params."""

    def __init__(self, X, Y, metrics=None) -> None:
        self.X_raw, self.Y_raw, self.user_metrics = X, Y, metrics

    def on_fit_start(self, loop: Loop) -> None:
        self.X = check_inputs(loop.net, self.X_raw, loop.dtype)
        self.Y = check_targets(loop.net, loop.loss, self.Y_raw, self.X, loop.dtype)
        self.metrics = _metrics.resolve_metrics(loop.loss.name, self.user_metrics)

    def on_epoch_end(self, loop: Loop) -> None:
        y_hat = loop.trainer.predict(self.X)
        loop.record["val_loss"] = float(loop.loss.value(y_hat, self.Y))
        for metric in self.metrics:
            loop.record[f"val_{metric.name}"] = _metrics.compute(metric, self.Y, y_hat)


class History(Callback):
    """Appends each epoch's record (with ``seconds``, the epoch's wall time) to ``loop.history``."""

    def on_epoch_end(self, loop: Loop) -> None:
        loop.record["seconds"] = time.perf_counter() - loop.epoch_started
        loop.history.append(loop.record)


@dataclass(frozen=True)
class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    ``monitor`` is "val_loss" when there is validation data, else "loss". With
    ``restore_best``, a run that stops returns the params of its best epoch. Its state (best
    value, epochs waited, best params) lives in ``loop.state``: checkpoints save it, and a
    model continued by ``nm.fit(model, ...)`` carries it on.
    """

    patience: int = 5
    monitor: str | None = None  # "val_loss" when there is validation data, else "loss"
    min_delta: float = 0.0
    restore_best: bool = True

    REASON = "early stopping"

    def _monitor(self, loop: Loop) -> str:
        if self.monitor is not None:
            return self.monitor
        return "val_loss" if any(isinstance(h, Validation) for h in loop.handlers) else "loss"

    def on_fit_start(self, loop: Loop) -> None:
        st, monitor = loop.state, self._monitor(loop)
        if st.get("monitor", monitor) != monitor or "best_value" not in st:
            st.update(best_value=None, wait=0, best=None)
        st["monitor"] = monitor

    def on_epoch_end(self, loop: Loop) -> None:
        st, monitor = loop.state, loop.state["monitor"]
        value = loop.record.get(monitor)
        if value is None:
            raise NomagicError(f"early stopping monitors {monitor!r}, which the epoch's record lacks "
                               f"(it has {', '.join(loop.record)})")
        if st["best_value"] is None or value < st["best_value"] - self.min_delta:
            st["best_value"], st["wait"] = value, 0
            if self.restore_best:
                st["best"] = dict(loop.params)
        else:
            st["wait"] += 1
            if st["wait"] >= self.patience:
                loop.stop(f"{self.REASON}: {monitor} did not improve for {self.patience} epochs")

    def on_fit_end(self, loop: Loop) -> None:
        st = loop.state
        by_me = (loop.stop_reason or self.REASON).startswith(self.REASON)  # old checkpoints: no reason
        if self.restore_best and loop.stopped and by_me and st.get("best") is not None:
            loop.params = st["best"]


class PlateauHandler(Callback):
    """``nm.ReduceLROnPlateau`` as a loop handler: ``nm.fit(..., callbacks=[nm.ReduceLROnPlateau(...)])``
    wraps it in one (or give ``nm.PlateauHandler(plateau)`` yourself).

    At the start of a run the optimizer's ``lr_scale`` is set to the plateau's scale: 1 for a
    fresh run, or the scale a checkpoint or a continued model recorded. After each epoch,
    ``opt.lr_scale = plateau.update(record[monitor], lr=opt.schedule(t + 1))``, where ``t`` is
    the number of optimizer steps done (so ``min_lr`` and ``eps`` apply to the learning rate of
    the next step, schedule included), and ``plateau.state()`` goes into ``loop.state["plateau"]``,
    which checkpoints and model files keep; the epoch's record gets ``lr``, the learning rate of
    the next step. This is PyTorch's ``sched.step(metric)`` once per epoch,
    after the epoch's optimizer steps. At the end of the run ``lr_scale`` goes back to 1 on the
    optimizer object (the scale stays in the state).
    """

    def __init__(self, plateau: ReduceLROnPlateau) -> None:
        if not isinstance(plateau, ReduceLROnPlateau):
            raise InvalidInputError(f"PlateauHandler needs an nm.ReduceLROnPlateau; got {type(plateau).__name__}")
        self.plateau = plateau
        self._synced = False

    def _sync(self, loop: Loop) -> None:
        saved = loop.state.get("plateau")
        if saved is None:
            self.plateau.reset()
        else:
            self.plateau.load_state(saved)
        loop.optimizer.lr_scale = self.plateau.scale

    def on_fit_start(self, loop: Loop) -> None:
        self._sync(loop)
        self._synced = False

    def on_epoch_start(self, loop: Loop) -> None:
        if not self._synced:  # a checkpoint restores loop.state after this handler's on_fit_start
            self._sync(loop)
            self._synced = True

    def on_epoch_end(self, loop: Loop) -> None:
        monitor = self.plateau.monitor
        value = loop.record.get(monitor)
        if value is None:
            raise NomagicError(f"ReduceLROnPlateau monitors {monitor!r}, which the epoch's record lacks "
                               f"(it has {', '.join(loop.record)}); give validation data for 'val_loss', "
                               "or monitor='loss'")
        opt = loop.optimizer
        t = loop.opt_state.step + 1
        opt.lr_scale = self.plateau.update(value, lr=opt.schedule(t))
        loop.state["plateau"] = self.plateau.state()
        loop.log("lr", opt.lr_at(t))

    def on_fit_end(self, loop: Loop) -> None:
        loop.optimizer.lr_scale = 1.0


def fingerprint(parts: Mapping[str, Any], arrays: list[np.ndarray]) -> str:
    """A hash of a run's settings and data: a checkpoint resumes only the run that wrote it."""
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for a in arrays:
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class Checkpoint(Callback):
    """Saves everything needed to resume after each epoch, atomically, in ``directory``; at the
    start of a run, resumes from what is there (refusing a checkpoint of another run).

    ``fingerprint`` ties the checkpoint to the run's settings and data; by default it is made
    of the loop's network, loss, optimizer, batch size, seed, dtype, shuffling, data and
    starting params.
    """

    def __init__(self, directory, fingerprint: str | None = None) -> None:
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise InvalidInputError(f"checkpoint must be a directory; {directory} is a file")
        self.directory = directory
        self.path = directory / CHECKPOINT_FILE
        self.fingerprint = fingerprint

    def on_fit_start(self, loop: Loop) -> None:
        if self.fingerprint is None:
            P = loop.params
            self.fingerprint = fingerprint(
                {"net": loop.net.to_dict(), "loss": loop.loss.name, "optimizer": loop.optimizer.config(),
                 "batch_size": loop.batch_size, "seed": loop.seed, "dtype": loop.dtype.name,
                 "shuffle": loop.shuffle, "epoch": loop.epoch},
                [loop.X, loop.Y] + [P[k] for k in sorted(P)])
        if self.path.exists():
            P, opt_state, state = read_checkpoint(self.path, self.fingerprint, loop.params, loop.optimizer,
                                                  loop.dtype)
            loop.params, loop.opt_state = P, opt_state
            loop.state.update(state)

    def on_epoch_end(self, loop: Loop) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        write_checkpoint(self.path, self.fingerprint, loop.params, loop.opt_state, loop.state)


class Progress(Callback):
    """A progress bar per epoch with the running loss, the rate (samples/s) and the time left;
    on ``stream`` (default stderr) and only there. ``nm.fit`` adds it on a terminal, or with
    ``verbose=True``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.bar: ProgressBar | None = None

    def on_epoch_start(self, loop: Loop) -> None:
        self.bar = ProgressBar(loop.n_batches, f"epoch {loop.epoch + 1}/{loop.end_epoch}", enabled=True,
                               stream=self.stream or sys.stderr, samples=loop.n)

    def on_batch_end(self, loop: Loop) -> None:
        self.bar.update(1, samples=len(loop.xb), loss=loop.loss_sum / loop.seen)

    def on_epoch_end(self, loop: Loop) -> None:
        self.bar.close("  ".join(f"{k} {v:.4g}" for k, v in loop.record.items()
                                 if k not in ("epoch", "seconds") and isinstance(v, (int, float))))
