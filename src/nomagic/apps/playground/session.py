"""One playground session per WebSocket: its settings, its data, its network, and the loop that
trains it. No web framework here: ``Session.handle(text)`` takes one message from the page and
returns the messages to send back; ``Session.run_loop(send)`` trains while the session runs.

The JSON message protocol (every message is an object with a ``type``):

Page → server

=================  =========================================================================
``config``         ``{"config": {...}}``: any of the settings in ``DEFAULTS`` (the others keep
                   their value). Changing the data resets the data and the network, changing
                   the network resets the network, changing the rate, regularization, batch
                   size or engine keeps the weights.
``run``            train until ``pause`` (or the epoch limit, or the target loss)
``pause``          stop training
``step``           train one epoch
``reset``          new initial weights (the seed's), epoch 0
``regenerate``     new data: the next seed
``set_weight``     ``{"param": "h1.weight", "index": [i, j], "value": v}`` (``index`` [j] for a bias)
``inject_crash``   ``{"neuron": "h1[0]", "phase": "forward"|"backward"|"commit"}``: the processes
                   engine only; the neuron crashes in the next batch and is restarted
``upload``         ``{"csv": "x1,x2,label\\n...", "name": "mine.csv"}``: your own data
``remove_region``  ``{"x0", "x1", "y0", "y1"}`` in data units: drop the points in that rectangle
``state``          ask for a full update now
=================  =========================================================================

Server → page

=================  =========================================================================
``hello``          ``session``, ``limits``, ``defaults``, ``options`` (the names each choice takes)
``config``         the full settings after a change, ``net`` (layers, neuron and param names),
                   ``data`` (train and test points as [x1, x2, label], domain, axes, classes)
``update``         ``epoch``, ``loss``, ``test_loss``, ``running``, ``heatmap`` (a ``grid``×``grid``
                   map of the output, row-major from the top-left corner, base64 of uint8 ``q``,
                   value = lo + q·(hi − lo)/255; for more than two classes ``classes`` and ``conf``),
                   ``neurons`` (per node name a small map the same way), ``weights`` (param →
                   nested lists), ``metrics`` (accuracy, confusion matrix of the test points),
                   ``trace`` (processes engine: messages since the last update, per link and kind,
                   a few recent lines, totals and drops), ``unrolled`` (recurrent: per step maps),
                   ``notes`` (things that happened: "neuron h1[0] crashed, restarted ...")
``audit``          the planner data set's audit: ``warnings``, ``kinds``, ``train_days``, ``classes``
``stopped``        ``reason``: training stopped by itself (epoch limit, target loss, divergence)
``error``          ``message``: what was wrong with the last message; the session goes on
=================  =========================================================================
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import time
from collections import Counter, deque
from typing import Any

import numpy as np

from ...errors import InvalidInputError, NomagicError
from . import datasets as ds

log = logging.getLogger("nomagic.playground")
ACTIVATION_NAMES = ("tanh", "relu", "sigmoid", "linear", "step", "softmax")
ENGINE_NAMES = ("tensor", "processes")
PHASES = ("forward", "backward", "commit")

LIMITS = {
    "max_layers": 8, "max_neurons": 32, "max_params_processes": 500, "max_lr": 10.0, "max_reg_rate": 10.0,
    "max_batch": 100, "min_points": 20, "max_points": 2000, "max_epochs": 1_000_000, "max_fps": 60,
    "max_upload_bytes": ds.MAX_UPLOAD_BYTES, "max_upload_rows": ds.MAX_UPLOAD_ROWS, "max_message_bytes": 2_000_000,
    "max_sessions": 32, "trace_queue": 5000, "max_weight": 100.0, "max_classes": 6,
}

DEFAULTS: dict[str, Any] = {
    "dataset": "circle", "problem": "classification", "noise": 0, "ratio": 50, "points": 500, "classes": 3,
    "seed": 0, "batch": 10, "features": ["x1", "x2"], "layers": [4, 2], "activations": ["tanh", "tanh"],
    "lr": 0.03, "reg": "none", "reg_rate": 0.0, "engine": "tensor", "rnn": False, "stop_epochs": 0,
    "target_loss": 0.0, "fps": 30,
}
DATA_KEYS = {"dataset", "problem", "noise", "ratio", "points", "classes", "seed"}
NET_KEYS = {"features", "layers", "activations", "rnn"}
TRAINER_KEYS = {"lr", "reg", "reg_rate", "engine", "batch"}

GRID = 50  # the output's heat map: GRID × GRID
SLICE_S = 0.02  # the most time one slice of training holds the event loop
HISTORY = 2000  # loss points kept for a page that reconnects


def _err(msg: str) -> dict:
    return {"type": "error", "message": msg}


# -- checking what the page sends ---------------------------------------------------------------


def _number(name: str, v: Any, lo: float, hi: float, *, integer: bool = False, lo_open: bool = False) -> Any:
    what = "a whole number" if integer else "a number"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InvalidInputError(f"{name} must be {what}; got {json.dumps(v)[:40]}")
    if not math.isfinite(v):
        raise InvalidInputError(f"{name} must be a finite number; got {v}")
    if integer and v != int(v):
        raise InvalidInputError(f"{name} must be a whole number; got {v}")
    if v < lo or v > hi or (lo_open and v <= lo):
        lo_text = f"> {lo:g}" if lo_open else f">= {lo:g}"
        raise InvalidInputError(f"{name} must be {lo_text} and <= {hi:g}; got {v:g}")
    return int(v) if integer else float(v)


def _choice(name: str, v: Any, options) -> str:
    if not isinstance(v, str) or v not in options:
        raise InvalidInputError(f"{name} must be one of: {', '.join(options)}; got {json.dumps(v)[:40]}")
    return v


def check_config(change: Any, current: dict) -> dict:
    """``current`` with ``change`` applied, every value checked; raises InvalidInputError saying
    which setting is wrong and what it may be."""
    if not isinstance(change, dict):
        raise InvalidInputError("config must be an object of settings, e.g. {\"lr\": 0.03}")
    unknown = sorted(set(change) - set(DEFAULTS))
    if unknown:
        raise InvalidInputError(f"unknown setting {unknown[0]!r}; the settings are: {', '.join(DEFAULTS)}")
    c = dict(current)
    L = LIMITS
    for k, v in change.items():
        if k == "dataset":
            c[k] = _choice(k, v, ds.DATASETS)
        elif k == "problem":
            c[k] = _choice(k, v, ("classification", "regression"))
        elif k == "noise":
            c[k] = _number(k, v, 0, 50, integer=True)
        elif k == "ratio":
            c[k] = _number(k, v, 10, 90, integer=True)
        elif k == "points":
            c[k] = _number(k, v, L["min_points"], L["max_points"], integer=True)
        elif k == "classes":
            c[k] = _number(k, v, 3, L["max_classes"], integer=True)
        elif k == "seed":
            c[k] = _number(k, v, 0, 2**31 - 1, integer=True)
        elif k == "batch":
            c[k] = _number(k, v, 1, L["max_batch"], integer=True)
        elif k == "features":
            if not isinstance(v, list) or not v:
                raise InvalidInputError(f"features must be a non-empty list of: {', '.join(ds.FEATURES)}")
            for f in v:
                _choice("each feature", f, tuple(ds.FEATURES))
            if len(set(v)) != len(v):
                raise InvalidInputError("features: each feature at most once")
            c[k] = [f for f in ds.FEATURES if f in v]
        elif k == "layers":
            if not isinstance(v, list):
                raise InvalidInputError("layers must be a list of neuron counts, one per hidden layer, e.g. [4, 2]")
            if len(v) > L["max_layers"]:
                raise InvalidInputError(f"too many hidden layers: {len(v)}; the limit is {L['max_layers']} layers")
            c[k] = [_number(f"layers[{i}] (neurons)", n, 1, L["max_neurons"], integer=True) for i, n in enumerate(v)]
        elif k == "activations":
            if not isinstance(v, list):
                raise InvalidInputError("activations must be a list of names, one per hidden layer")
            c[k] = [_choice(f"activations[{i}]", a, ACTIVATION_NAMES) for i, a in enumerate(v)]
        elif k == "lr":
            c[k] = _number("learning rate (lr)", v, 0, L["max_lr"], lo_open=True)
        elif k == "reg":
            c[k] = _choice("regularization (reg)", v, ("none", "l1", "l2"))
        elif k == "reg_rate":
            c[k] = _number("regularization rate (reg_rate)", v, 0, L["max_reg_rate"])
        elif k == "engine":
            c[k] = _choice(k, v, ENGINE_NAMES)
        elif k == "rnn":
            if not isinstance(v, bool):
                raise InvalidInputError(f"rnn must be true or false; got {json.dumps(v)[:40]}")
            c[k] = v
        elif k == "stop_epochs":
            c[k] = _number("stop after epochs (stop_epochs)", v, 0, L["max_epochs"], integer=True)
        elif k == "target_loss":
            c[k] = _number("target loss (target_loss)", v, 0, 1e6)
        elif k == "fps":
            c[k] = _number("updates per second (fps)", v, 1, L["max_fps"], integer=True)
    # the activations follow the layers: missing ones take the last (or tanh), extra ones go
    acts = list(c["activations"])[:len(c["layers"])]
    while len(acts) < len(c["layers"]):
        acts.append(acts[-1] if acts else "tanh")
    c["activations"] = acts
    if c["dataset"] in ds.REGRESSION and c["problem"] != "regression":
        raise InvalidInputError(f"data set {c['dataset']!r} is a regression data set; set problem to 'regression'")
    if c["dataset"] in ds.CLASSIFICATION and c["problem"] != "classification":
        raise InvalidInputError(f"data set {c['dataset']!r} is a classification data set; "
                                "set problem to 'classification'")
    if c["rnn"] and not c["layers"]:
        raise InvalidInputError("a recurrent network needs at least one hidden layer (its first is the Elman layer)")
    return c


def n_params(config: dict, n_out: int) -> int:
    """How many params the network of ``config`` has."""
    F = len(config["features"])
    sizes = config["layers"]
    total, prev = 0, (1 if config["rnn"] else F)
    for i, n in enumerate(sizes):
        total += prev * n + n + (n * n if config["rnn"] and i == 0 else 0)
        prev = n
    return total + prev * n_out + n_out


def _b64(a: np.ndarray) -> dict:
    """A map as base64 of uint8 with its range: value = lo + q·(hi − lo)/255."""
    a = np.nan_to_num(np.asarray(a, dtype=np.float64), nan=0.0, posinf=1e6, neginf=-1e6)
    lo, hi = float(a.min()), float(a.max())
    span = hi - lo if hi > lo else 1.0
    q = np.round((a - lo) / span * 255).astype(np.uint8)
    return {"lo": round(lo, 5), "hi": round(hi, 5), "b64": base64.b64encode(q.tobytes()).decode("ascii")}


def _round(a: np.ndarray) -> list:
    a = np.nan_to_num(np.asarray(a, dtype=np.float64), nan=0.0, posinf=1e6, neginf=-1e6)
    return np.round(a, 4).tolist()


# -- the session -------------------------------------------------------------------------------


class Session:
    """A page's training session. ``handle`` answers messages; ``run_loop`` trains while running.

    Memory is bounded: the data (at most ``max_points`` or an upload's 5,000 rows), the loss
    history (``HISTORY`` points), the notes (20) and the processes engine's trace stream
    (``trace_queue`` events; what does not fit is dropped and counted).
    """

    def __init__(self, session_id: str = "local") -> None:
        self.id = session_id
        self.config = dict(DEFAULTS)
        self.upload: ds.Data | None = None
        self.upload_name = ""
        self.trainer = None
        self.stream = None
        self.running = False
        self.closed = False
        self.history: deque = deque(maxlen=HISTORY)
        self.notes: deque = deque(maxlen=20)
        self.wake = asyncio.Event()
        self.trace_total = 0
        self.trace_dropped_seen = 0
        self.audit_msg: dict | None = None
        self._build_data()

    # -- building --
    def _build_data(self) -> None:
        c = self.config
        if c["dataset"] == "csv":
            if self.upload is None:
                raise InvalidInputError("no uploaded data yet: upload a CSV file x1,x2,label first")
            data = self.upload
        else:
            data = ds.generate(c["dataset"], c["points"], c["noise"], c["seed"], c["classes"])
        self.data = data
        self.train_idx, self.test_idx = ds.split(len(data), c["ratio"], c["seed"])
        self.keep = np.ones(len(data), dtype=bool)
        self._build_net()

    def _net_coords(self, P: np.ndarray) -> np.ndarray:
        """Points in data units → the network's square [-6, 6]²."""
        x0, x1, y0, y1 = self.data.domain
        lo, span = np.array([x0, y0]), np.array([x1 - x0, y1 - y0])
        return (P - lo) / span * 12.0 - 6.0

    def inputs(self, P: np.ndarray) -> np.ndarray:
        """The network's input for points ``P`` (data units): features, or a sequence of them."""
        F = ds.features(self._net_coords(P), self.config["features"])
        return F[:, :, None] if self.config["rnn"] else F

    def targets(self, idx: np.ndarray) -> np.ndarray:
        y = self.data.y[idx]
        if self.n_out > 1:
            return np.eye(self.n_out)[y.astype(int)]
        return y[:, None]

    def _build_net(self) -> None:
        import nomagic as nm

        c, data = self.config, self.data
        if data.problem == "regression":
            self.n_out, self.out_act, self.loss_name = 1, "linear", "mse"
        elif data.n_classes > 2:
            self.n_out, self.out_act, self.loss_name = data.n_classes, "softmax", "cross_entropy"
        else:
            self.n_out, self.out_act, self.loss_name = 1, "tanh", "mse"
        count = n_params(c, self.n_out)
        if c["engine"] == "processes" and count > LIMITS["max_params_processes"]:
            raise InvalidInputError(f"the network has {count} params; the processes engine takes at most "
                                    f"{LIMITS['max_params_processes']} (one process per neuron): make it smaller "
                                    "or use the tensor engine")
        F = len(c["features"])
        stage = nm.inputs(1 if c["rnn"] else F)
        self.layers: list[tuple[str, str, str, int]] = []  # (name, kind, activation, size)
        for i, (n, act) in enumerate(zip(c["layers"], c["activations"])):
            if c["rnn"] and i == 0:
                stage = stage | nm.recurrent(n, activation=act, name="r1")
                self.layers.append(("r1", "recurrent", act, n))
            else:
                stage = stage | nm.dense(n, activation=act, name=f"h{i + 1}")
                self.layers.append((f"h{i + 1}", "dense", act, n))
        stage = stage | nm.dense(self.n_out, activation=self.out_act, name="out")
        self.layers.append(("out", "dense", self.out_act, self.n_out))
        self.net = stage
        self.P = {k: np.array(v) for k, v in self.net.init(seed=c["seed"], dtype="float64").items()}
        self.epoch = 0
        self.batch_pos = 0
        self.order = None
        self.history.clear()
        self._build_trainer()
        self._audit()

    def _build_trainer(self) -> None:
        import nomagic as nm

        from ...engines import get_engine
        from ...model.losses import get_loss

        self._close_trainer()
        c = self.config
        l1 = c["reg_rate"] if c["reg"] == "l1" else 0.0
        l2 = c["reg_rate"] if c["reg"] == "l2" else 0.0
        opt = nm.sgd(c["lr"])
        options = {}
        if c["engine"] == "processes":
            from ...engines.processes import EventStream

            self.stream = EventStream(LIMITS["trace_queue"])
            options = {"on_event": self.stream, "max_restarts": 3, "restart_period": 5.0}
        engine = get_engine(c["engine"])
        self.trainer = engine.Trainer(self.net, self.P, opt, opt.init(self.P), get_loss(self.loss_name),
                                      l1=l1, l2=l2, **options)
        self.pn_batches = 0
        self.armed: list[tuple[str, int, int]] = []  # (neuron, its g, restarts before)

    def _close_trainer(self) -> None:
        if self.trainer is not None:
            try:
                self.trainer.close()
            finally:
                self.trainer = None
        if self.stream is not None:
            self.stream.close()
            self.stream = None

    def close(self) -> None:
        """End the session: training stops, the engine's processes end."""
        self.running = False
        self.closed = True
        self._close_trainer()
        self.wake.set()

    # -- messages --
    def hello(self) -> dict:
        return {"type": "hello", "session": self.id, "limits": LIMITS, "defaults": DEFAULTS,
                "options": {"datasets": list(ds.DATASETS), "classification": list(ds.CLASSIFICATION),
                            "regression": list(ds.REGRESSION), "features": ds.FEATURE_LABELS,
                            "activations": list(ACTIVATION_NAMES), "engines": list(ENGINE_NAMES),
                            "phases": list(PHASES)}}

    def handle(self, text: Any) -> list[dict]:
        """Answer one message from the page: the messages to send back (an ``error`` if it was wrong)."""
        if not isinstance(text, str):
            return [_err("messages must be JSON text")]
        if len(text) > LIMITS["max_message_bytes"]:
            return [_err(f"message too large: {len(text):,} bytes; the limit is {LIMITS['max_message_bytes']:,}")]
        try:
            msg = json.loads(text)
        except (ValueError, RecursionError) as exc:
            return [_err(f"not JSON: {str(exc)[:80]}")]
        if not isinstance(msg, dict):
            return [_err("a message must be a JSON object with a 'type'")]
        kind = msg.get("type")
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            return [_err(f"unknown message type {json.dumps(kind)[:40]}; the types are: {', '.join(_HANDLERS)}")]
        try:
            return handler(self, msg)
        except NomagicError as exc:
            return [_err(str(exc))]
        except RecursionError:
            return [_err("message nested too deeply")]
        except Exception as exc:  # a bug of ours: said in the page, the session goes on
            log.exception("playground: %s failed", kind)
            return [_err(f"internal error while handling '{kind}': {type(exc).__name__}: {exc}")]

    def _field(self, msg: dict, name: str) -> Any:
        if name not in msg:
            raise InvalidInputError(f"'{msg['type']}' needs the field '{name}'")
        return msg[name]

    def on_config(self, msg: dict) -> list[dict]:
        new = check_config(self._field(msg, "config"), self.config)
        changed = {k for k in new if new[k] != self.config[k]}
        return self.apply_config(new, changed)

    def apply_config(self, new: dict, changed: set) -> list[dict]:
        old = self.config
        self.config = new
        try:
            if changed & DATA_KEYS:
                self._build_data()
            elif changed & NET_KEYS:
                self._build_net()
            elif changed & TRAINER_KEYS:
                if new["engine"] == "processes":
                    count = n_params(new, self.n_out)
                    if count > LIMITS["max_params_processes"]:
                        raise InvalidInputError(
                            f"the network has {count} params; the processes engine takes at most "
                            f"{LIMITS['max_params_processes']} (one process per neuron): make it smaller first")
                self._build_trainer()
        except NomagicError:
            self.config = old  # refused: everything stays as it was
            if changed & DATA_KEYS:
                self._build_data()
            elif changed & (NET_KEYS | TRAINER_KEYS):
                self._build_net()
            raise
        return self.config_messages()

    def config_messages(self) -> list[dict]:
        out = [self.describe(), self.update()]
        if self.audit_msg is not None:
            out.append(self.audit_msg)
        return out

    def describe(self) -> dict:
        d = self.data
        kept_train = self.train_idx[self.keep[self.train_idx]]
        kept_test = self.test_idx[self.keep[self.test_idx]]

        def pts(idx):
            return np.round(np.column_stack([d.X[idx], d.y[idx]]), 4).tolist()

        names = {"inputs": [ds.FEATURE_LABELS[f] for f in self.config["features"]]}
        for name, _kind, _act, n in self.layers:
            names[name] = [f"{name}[{i}]" for i in range(n)]
        return {"type": "config", "config": self.config, "upload": self.upload_name,
                "net": {"layers": [{"name": n, "kind": k, "activation": a, "size": s} for n, k, a, s in self.layers],
                        "inputs": names["inputs"], "params": {k: list(v.shape) for k, v in self.P.items()},
                        "n_params": int(sum(v.size for v in self.P.values())), "loss": self.loss_name,
                        "output_activation": self.out_act},
                "data": {"train": pts(kept_train), "test": pts(kept_test), "domain": list(d.domain),
                         "axes": list(d.axes), "problem": d.problem, "n_classes": d.n_classes,
                         "class_names": d.class_names}}

    def on_run(self, msg: dict) -> list[dict]:
        self.running = True
        self.wake.set()
        return [{"type": "status", "running": True}]

    def on_pause(self, msg: dict) -> list[dict]:
        self.running = False
        return [{"type": "status", "running": False}]

    def on_step(self, msg: dict) -> list[dict]:
        self.running = False
        self.train_epoch()
        return [self.update()]

    def on_reset(self, msg: dict) -> list[dict]:
        self.running = False
        self._build_net()
        return self.config_messages()

    def on_regenerate(self, msg: dict) -> list[dict]:
        self.running = False
        new = dict(self.config, seed=(self.config["seed"] + 1) % 2**31)
        return self.apply_config(new, {"seed"})

    def on_state(self, msg: dict) -> list[dict]:
        return self.config_messages()

    def on_set_weight(self, msg: dict) -> list[dict]:
        key = self._field(msg, "param")
        if not isinstance(key, str) or key not in self.P:
            raise InvalidInputError(f"set_weight: no param {json.dumps(key)[:40]}; the params are: {', '.join(self.P)}")
        index = self._field(msg, "index")
        shape = self.P[key].shape
        if not isinstance(index, list) or len(index) != len(shape):
            raise InvalidInputError(f"set_weight: index must be a list of {len(shape)} whole numbers for {key} "
                                    f"(shape {list(shape)})")
        idx = tuple(_number(f"index[{i}]", v, 0, shape[i] - 1, integer=True) for i, v in enumerate(index))
        value = _number("value", self._field(msg, "value"), -LIMITS["max_weight"], LIMITS["max_weight"])
        P = {k: np.array(v) for k, v in self.P.items()}
        P[key][idx] = value
        self.trainer.set_params(P)
        self.P = P
        return [self.update()]

    def on_inject_crash(self, msg: dict) -> list[dict]:
        from ...engines.processes import Fault

        if self.config["engine"] != "processes":
            raise InvalidInputError("inject_crash: switch the engine to 'processes' first (only neuron processes "
                                    "can crash)")
        neuron = self._field(msg, "neuron")
        phase = _choice("phase", msg.get("phase", "forward"), PHASES)
        pn = self.trainer.pn
        w = pn.wiring
        names = {w.name(g): g for g in range(w.n_sensors, w.size)}
        if not isinstance(neuron, str) or neuron not in names:
            raise InvalidInputError(f"inject_crash: no neuron {json.dumps(neuron)[:40]}; "
                                    f"the neurons are: {', '.join(list(names)[:40])}")
        if pn.pending_faults >= 8:
            raise InvalidInputError("inject_crash: 8 crashes are already waiting; train a step first")
        pn.inject(Fault(neuron, phase=phase, batch=self.pn_batches, times=1))
        g = names[neuron]
        self.armed.append((neuron, g, pn.restarts(neuron), phase))
        return [{"type": "note", "message": f"crash armed: neuron {neuron} will crash in its {phase} phase of the "
                                            "next batch"}]

    def on_upload(self, msg: dict) -> list[dict]:
        text = self._field(msg, "csv")
        name = msg.get("name", "upload.csv")
        if not isinstance(name, str):
            raise InvalidInputError("upload: 'name' must be a string")
        data = ds.parse_csv(text)
        self.running = False
        old_upload, old_name = self.upload, self.upload_name
        self.upload, self.upload_name = data, name[:80]
        new = dict(self.config, dataset="csv", problem=data.problem)
        try:
            return self.apply_config(new, {"dataset"})
        except NomagicError:
            self.upload, self.upload_name = old_upload, old_name
            raise

    def on_remove_region(self, msg: dict) -> list[dict]:
        box = [_number(k, self._field(msg, k), -1e9, 1e9) for k in ("x0", "x1", "y0", "y1")]
        x0, x1 = sorted(box[:2])
        y0, y1 = sorted(box[2:])
        X = self.data.X
        inside = (X[:, 0] >= x0) & (X[:, 0] <= x1) & (X[:, 1] >= y0) & (X[:, 1] <= y1)
        keep = self.keep & ~inside
        if keep[self.train_idx].sum() < 2:
            raise InvalidInputError("remove_region: that would leave fewer than 2 training points")
        removed = int((self.keep & inside).sum())
        self.keep = keep
        self.order = None
        self.batch_pos = 0
        self._audit()
        self.notes.append(f"removed {removed} points in [{x0:.3g}, {x1:.3g}] × [{y0:.3g}, {y1:.3g}]")
        return self.config_messages()

    # -- the planner's audit --
    def _audit(self) -> None:
        if self.config["dataset"] != "planner":
            self.audit_msg = None
            return
        from ..planner.audit import audit
        from ..planner.dataset import subset
        from ..planner.sessions import CLASSES

        d = ds.planner_data()
        train = self.train_idx[self.keep[self.train_idx]]
        days = np.sort(self.data.extra["days"][train])
        asked = np.sort(self.data.extra["days"])  # every day of the data set: what the model will be asked about
        report = audit(subset(d.weather, days), d.classes[days], user_weather=subset(d.weather, asked))
        self.audit_msg = {"type": "audit", "warnings": list(report.warnings), "kinds": list(report.warning_kinds),
                          "train_days": int(report.train_days),
                          "classes": {c: int(n) for c, n in zip(CLASSES, np.bincount(d.classes[days], minlength=4))}}

    # -- training --
    def _train_kept(self) -> np.ndarray:
        return self.train_idx[self.keep[self.train_idx]]

    def train_batches(self, budget_s: float = SLICE_S) -> bool:
        """Train mini-batches for at most about ``budget_s`` seconds; True when an epoch ended."""
        idx = self._train_kept()
        B = self.config["batch"]
        if self.order is None:
            rng = np.random.default_rng(self.config["seed"] * 7919 + self.epoch)
            self.order = idx[rng.permutation(len(idx))]
            self.X_order = self.inputs(self.data.X[self.order])
            self.Y_order = self.targets(self.order)
        t0 = time.perf_counter()
        n = len(self.order)
        while self.batch_pos < n:
            lo, hi = self.batch_pos, min(self.batch_pos + B, n)
            loss = self.trainer.train_batch(self.X_order[lo:hi], self.Y_order[lo:hi])
            self.batch_pos = hi
            if self.config["engine"] == "processes":
                self.pn_batches += 1
                self._check_crashes()
            if not math.isfinite(loss):
                raise _Diverged()
            if time.perf_counter() - t0 > budget_s:
                break
        if self.batch_pos >= n:
            self.epoch += 1
            self.batch_pos = 0
            self.order = None
            self.P = {k: np.array(v) for k, v in self.trainer.params().items()}
            return True
        return False

    def train_epoch(self) -> None:
        """One whole epoch (the Step button)."""
        try:
            while not self.train_batches(budget_s=math.inf):
                pass
        except _Diverged:
            self.P = {k: np.array(v) for k, v in self.trainer.params().items()}
            self.notes.append("the loss is no longer a finite number: lower the learning rate and press Reset")

    def _check_crashes(self) -> None:
        if not self.armed:
            return
        pn = self.trainer.pn
        still = []
        for neuron, g, before, phase in self.armed:
            now = pn.restarts(neuron)
            if now > before:
                self.notes.append(f"neuron {neuron} crashed ({phase}), restarted from its snapshot; training went on "
                                  f"(restart {now})")
            else:
                still.append((neuron, g, before, phase))
        self.armed = still

    async def run_loop(self, send) -> None:
        """Train while ``running``; send an update after each epoch, at most ``fps`` a second.
        Holds the event loop for at most about ``SLICE_S`` at a time."""
        while not self.closed:
            if not self.running:
                self.wake.clear()
                await self.wake.wait()
                continue
            t0 = time.perf_counter()
            try:
                done = self.train_batches()
                while not done and self.running and time.perf_counter() - t0 < 0.25:
                    await asyncio.sleep(0)
                    if self.closed or self.trainer is None:
                        return
                    done = self.train_batches()
            except _Diverged:
                self.running = False
                self.P = {k: np.array(v) for k, v in self.trainer.params().items()}
                await send(self.update())
                await send({"type": "stopped", "reason": "the loss is no longer a finite number (the learning "
                                                         "rate is too high for this network): lower it and Reset"})
                continue
            except Exception as exc:  # said in the page: the loop never dies
                self.running = False
                if not isinstance(exc, NomagicError):
                    log.exception("playground: training failed")
                await send(_err(f"training stopped: {exc}"))
                continue
            if not self.running or self.closed:
                continue
            if not done:
                self.P = {k: np.array(v) for k, v in self.trainer.params().items()}
            upd = self.update()
            await send(upd)
            reason = self._stop_reason(upd)
            if reason:
                self.running = False
                await send({"type": "stopped", "reason": reason})
            spare = 1.0 / self.config["fps"] - (time.perf_counter() - t0)
            await asyncio.sleep(max(spare, 0.0))

    def _stop_reason(self, upd: dict) -> str | None:
        c = self.config
        if c["stop_epochs"] and self.epoch >= c["stop_epochs"]:
            return f"reached {c['stop_epochs']} epochs"
        if c["target_loss"] and upd["test_loss"] is not None and upd["test_loss"] <= c["target_loss"]:
            return f"test loss {upd['test_loss']:.4f} reached the target {c['target_loss']:g}"
        return None

    # -- what the page sees --
    def forward_all(self, Xn: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Every layer's output for inputs ``Xn`` with the current params (NumPy, as the engines
        compute it): ([inputs, layer 1, ..., output], the recurrent layer's state per step)."""
        from ...model.activations import get_activation

        P = self.P
        rnn = self.config["rnn"]
        a = Xn[:, :, 0] if rnn else Xn
        outs, steps = [a], []
        for name, kind, act, n in self.layers:
            f = get_activation(act)
            if kind == "recurrent":
                h = np.zeros((len(Xn), n))
                for t in range(Xn.shape[1]):
                    h = f(Xn[:, t, :] @ P[f"{name}.W"] + h @ P[f"{name}.U"] + P[f"{name}.b"])
                    steps.append(h)
                a = h
            else:
                a = f(a @ P[f"{name}.weight"] + P[f"{name}.bias"])
            outs.append(a)
        return outs, steps

    def _grid(self, res: int) -> np.ndarray:
        x0, x1, y0, y1 = self.data.domain
        xs = np.linspace(x0, x1, res)
        ys = np.linspace(y1, y0, res)  # the top row first
        gx, gy = np.meshgrid(xs, ys)
        return np.column_stack([gx.ravel(), gy.ravel()])

    def _predict_points(self, idx: np.ndarray) -> np.ndarray:
        return self.forward_all(self.inputs(self.data.X[idx]))[0][-1]

    def update(self) -> dict:
        from ...model.losses import get_loss

        loss_fn = get_loss(self.loss_name)
        tr, te = self._train_kept(), self.test_idx[self.keep[self.test_idx]]
        out_tr, out_te = self._predict_points(tr), self._predict_points(te)
        loss = float(loss_fn.value(out_tr, self.targets(tr))) if len(tr) else None
        test_loss = float(loss_fn.value(out_te, self.targets(te))) if len(te) else None
        loss = loss if loss is None or math.isfinite(loss) else None
        test_loss = test_loss if test_loss is None or math.isfinite(test_loss) else None
        if not self.history or self.history[-1][0] != self.epoch:
            self.history.append((self.epoch, loss, test_loss))
        outs, _ = self.forward_all(self.inputs(self._grid(GRID)))
        heat = outs[-1]
        if self.n_out > 1:
            heatmap = {"grid": GRID, "classes": base64.b64encode(heat.argmax(1).astype(np.uint8).tobytes()).decode(),
                       "conf": base64.b64encode(np.round(heat.max(1) * 255).astype(np.uint8).tobytes()).decode()}
        else:
            heatmap = {"grid": GRID, **_b64(heat[:, 0])}
        hidden = sum(n for _, _, _, n in self.layers[:-1])
        res = 16 if hidden <= 48 else 8
        gouts, steps = self.forward_all(self.inputs(self._grid(res)))
        neurons = {}
        for j, f in enumerate(self.config["features"]):
            neurons[f] = _b64(gouts[0][:, j])
        for (name, _kind, _act, n), a in zip(self.layers[:-1], gouts[1:-1]):
            for i in range(n):
                neurons[f"{name}[{i}]"] = _b64(a[:, i])
        msg = {"type": "update", "epoch": self.epoch, "loss": loss, "test_loss": test_loss, "running": self.running,
               "heatmap": heatmap, "neuron_grid": res, "neurons": neurons,
               "weights": {k: _round(v) for k, v in self.P.items()},
               "metrics": self._metrics(out_tr, out_te, tr, te), "trace": self._trace(),
               "notes": list(self.notes)}
        self.notes.clear()
        if self.config["rnn"]:
            first = self.layers[0][3]
            msg["unrolled"] = {"steps": len(steps), "neurons": first,
                               "maps": [[_b64(h[:, i]) for i in range(first)] for h in steps],
                               "inputs": [ds.FEATURE_LABELS[f] for f in self.config["features"]]}
        return msg

    def _metrics(self, out_tr, out_te, tr, te) -> dict | None:
        if self.data.problem != "classification":
            return None
        k = max(self.data.n_classes, 2)

        def classes(out, idx):
            if self.n_out > 1:
                return out.argmax(1), self.data.y[idx].astype(int)
            return (out[:, 0] >= 0).astype(int), (self.data.y[idx] > 0).astype(int)

        p_tr, y_tr = classes(out_tr, tr)
        p_te, y_te = classes(out_te, te)
        confusion = np.zeros((k, k), dtype=int)
        np.add.at(confusion, (y_te, p_te), 1)
        return {"train_accuracy": float(np.mean(p_tr == y_tr)) if len(tr) else None,
                "test_accuracy": float(np.mean(p_te == y_te)) if len(te) else None,
                "confusion": confusion.tolist(), "labels": self.data.class_names or [str(i) for i in range(k)]}

    def _trace(self) -> dict | None:
        """The processes engine's messages since the last update, drained from the bounded stream."""
        s = self.stream
        if s is None:
            return None
        links: Counter = Counter()
        kinds: Counter = Counter()
        recent: deque = deque(maxlen=8)
        n = 0
        for ev in s.drain():  # in the event loop's thread that also trains: no await needed
            if ev.kind == "dropped":
                continue
            n += 1
            kinds[ev.kind] += 1
            if ev.kind in ("forward", "delta"):
                a, b = _node(ev.sender), _node(ev.receiver)
                if a and b:
                    links[f"{a}>{b}" if ev.kind == "forward" else f"{b}>{a}", ev.kind] += 1
            elif ev.kind == "commit":
                b = _node(ev.receiver)
                if b:
                    links[b, "commit"] += 1
            if ev.kind not in ("get params", "params"):  # the page's own reads: counted, not shown
                recent.append(str(ev))
        s.delivered += n
        self.trace_total += n
        per_link: dict[str, dict] = {}
        for (link, kind), count in links.items():
            per_link.setdefault(link, {})[kind] = count
        return {"received": n, "total": self.trace_total, "dropped": s.dropped, "kinds": dict(kinds),
                "links": per_link, "recent": list(recent), "queue_limit": s.maxsize}


def _node(name: str) -> str | None:
    """A trace name ("sensor inputs[0]", "neuron h1[2]") as the page's node id ("in0", "h1[2]")."""
    if name.startswith("neuron "):
        return name[7:]
    if name.startswith("sensor inputs["):
        return "in" + name[14:-1]
    return None


class _Diverged(Exception):
    pass


_HANDLERS = {
    "config": Session.on_config, "run": Session.on_run, "pause": Session.on_pause, "step": Session.on_step,
    "reset": Session.on_reset, "regenerate": Session.on_regenerate, "set_weight": Session.on_set_weight,
    "inject_crash": Session.on_inject_crash, "upload": Session.on_upload, "remove_region": Session.on_remove_region,
    "state": Session.on_state,
}
