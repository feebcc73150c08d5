"""The three models of the talk, trained on an athlete's days.

* ``perceptron`` — one step neuron and the perceptron learning rule (pocket variant), on the
  day features: "train tomorrow, or rest?" It answers yes or no, so its probabilities are 0 or 1.
* ``mlp`` — a multi-layer network (day features → 32 relu → 16 relu → 4 softmax) for the class:
  rest, easy, long or hard.
* ``rnn`` — a recurrent network (GRU, 24 units, → 4 softmax) reading the last ``WINDOW`` days of
  log and weather, then the day being planned.

The networks train in float64 with ``nm.fit`` (Adam, cross-entropy, an L2 penalty): first with
early stopping on the last tenth of the training days (in time order) to find how many epochs
help, then on all the training days for that many epochs. The perceptron trains with
``nm.fit_perceptron``. Everything is fully determined by the seed.

Why a recommendation: :meth:`PlannerModel.explain` runs the library's own backward pass through
a linear identity layer (the "probe") put in front of the network. With ``W = I`` the probe
changes nothing, and the diagonal of its weight gradient is ``Σ_t x_t,i · ∂L/∂x_t,i`` — each
input times the gradient of the loss with respect to it, summed over time steps. With ``L = −log
p(class)`` that is how much each (standardised) input pushed the probability of the class up
(positive) or down, measured from the average training day (input 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import nomagic as nm
from nomagic.errors import InvalidInputError

from .dataset import PlannerData
from .features import DAY_FEATURES, STEP_FEATURES, WEEKDAYS, Scaler, day_matrix, sequence_tensor
from .sessions import CLASSES

MODELS = ("perceptron", "mlp", "rnn")
BINARY = ("rest", "train")


@dataclass(frozen=True)
class TrainOptions:
    """How the models are trained (part of the cache key)."""

    seed: int = 0
    mlp_hidden: tuple[int, int] = (32, 16)
    rnn_units: int = 24
    epochs: int = 300  # at most: early stopping decides
    rnn_epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    l2: float = 1e-2
    rnn_l2: float = 1e-4
    patience: int = 25
    perceptron_epochs: int = 50


def _layers(kind: str, n_in: int, opts: TrainOptions):
    """The network's stages after its inputs, each named (so a probe can go in front)."""
    if kind == "mlp":
        h1, h2 = opts.mlp_hidden
        return [nm.dense(h1, "relu", name="hidden1"), nm.dense(h2, "relu", name="hidden2"),
                nm.dense(len(CLASSES), "softmax", name="out")]
    if kind == "rnn":
        return [nm.gru(opts.rnn_units, name="gru"), nm.dense(len(CLASSES), "softmax", name="out")]
    return [nm.dense(1, "step", name="neuron")]


def _network(kind: str, n_in: int, opts: TrainOptions, probe: bool = False) -> nm.Network:
    net = nm.inputs(n_in)
    if probe:
        net = net | nm.dense(n_in, "linear", bias=False, name="probe")
    for stage in _layers(kind, n_in, opts):
        net = net | stage
    return net


@dataclass(frozen=True, eq=False)
class PlannerModel:
    """A trained model with the standardisation of its inputs."""

    kind: str
    model: nm.Model
    scaler: Scaler
    options: TrainOptions = field(default_factory=TrainOptions)

    @property
    def classes(self) -> tuple[str, ...]:
        return BINARY if self.kind == "perceptron" else CLASSES

    @property
    def feature_names(self) -> tuple[str, ...]:
        return STEP_FEATURES if self.kind == "rnn" else DAY_FEATURES

    def inputs(self, data: PlannerData, idx) -> np.ndarray:
        """Standardised inputs for the days at ``idx``."""
        raw = sequence_tensor(data, idx) if self.kind == "rnn" else day_matrix(data, idx)
        return self.scaler.transform(raw)

    def predict_proba(self, data: PlannerData, idx, engine: str = "tensor") -> np.ndarray:
        """Probabilities (days, classes) for the days at ``idx``, run on ``engine``."""
        X = self.inputs(data, idx)
        out = self.model.net.predict(self.model.params, X, engine=engine)
        if self.kind == "perceptron":
            out = np.asarray(out).reshape(-1, 1)
            return np.hstack([1.0 - out, out])  # step output: train = 1
        return np.asarray(out, dtype=np.float64)

    def pushes(self, data: PlannerData, i: int, cls: int, engine: str = "tensor") -> np.ndarray:
        """How much each input pushed the log-probability of class ``cls`` on day ``i`` up (> 0)
        or down: ``Σ_t x_t · ∂log p/∂x_t`` per input, by the backward pass through the probe."""
        if self.kind == "perceptron":
            # a step neuron has no useful gradient: its push is w_i · x_i towards "train"
            x = self.inputs(data, [i])[0]
            w = np.asarray(self.model.params["neuron.weight"][:, 0])
            return w * x * (1.0 if cls == 1 else -1.0)
        X = self.inputs(data, [i])
        n_in = X.shape[-1]
        net = _network(self.kind, n_in, self.options, probe=True)
        params = dict(self.model.params)
        params["probe.weight"] = np.eye(n_in)
        _, grads = net.loss_and_grad(params, X, np.array([cls]), loss="cross_entropy", engine=engine)
        return -np.diag(np.asarray(grads["probe.weight"]))  # L = −log p: minus its gradient

    def explain(self, data: PlannerData, i: int, cls: int, engine: str = "tensor") -> list[dict]:
        """The reasons for class ``cls`` on day ``i``, strongest first: ``{"feature", "value",
        "push"}``. The weekday's seven inputs count as one ("weekday"), so do the season's two;
        ``value`` is what the model read (the day's value; for the recurrent network's past days,
        how many of the last weeks' days were of that class, or their mean)."""
        push = self.pushes(data, i, cls, engine)
        names = self.feature_names
        raw = sequence_tensor(data, [i])[0] if self.kind == "rnn" else day_matrix(data, [i])
        day = raw[-1]
        groups: dict[str, tuple[float, object]] = {}
        for j, name in enumerate(names):
            if name == "the day being planned":
                continue
            if name.startswith("weekday: "):
                key, value = "weekday", WEEKDAYS[int(np.argmax(day[:7]))]
            elif name.startswith("season"):
                key, value = "season", _season_word(data.dates[i] if i < len(data) else None)
            elif name.startswith("past days: ") and name[11:] in CLASSES:
                key, value = name, f"{int(raw[:-1, j].sum())} of the last {len(raw) - 1} days"
            elif name.startswith("past days: "):
                key, value = name, round(float(np.nanmean(raw[:-1, j])), 2)
            else:
                key, value = name, None if np.isnan(day[j]) else round(float(
                    np.expm1(day[j]) if name == "precipitation" else day[j]), 2)
            total = groups.get(key, (0.0, value))[0] + float(push[j])
            groups[key] = (total, value)
        ranked = sorted(groups.items(), key=lambda kv: -abs(kv[1][0]))
        return [{"feature": k, "value": v, "push": round(p, 4)} for k, (p, v) in ranked]


def _season_word(day) -> str:
    if day is None:
        return ""
    month = int(str(np.datetime64(day, "M"))[-2:])
    return ("winter", "spring", "summer", "autumn")[(month % 12) // 3]


def _split(n: int, fraction: float = 0.1) -> int:
    """Index where the validation tail of the training days begins (time order kept)."""
    return max(1, int(round(n * (1.0 - fraction))))


def train(kind: str, data: PlannerData, idx: np.ndarray, opts: TrainOptions | None = None,
          verbose: bool = False) -> PlannerModel:
    """Train model ``kind`` on the days at ``idx`` (in time order)."""
    opts = opts or TrainOptions()
    if kind not in MODELS:
        raise InvalidInputError(f"unknown model {kind!r}; choose one of: {', '.join(MODELS)}")
    idx = np.asarray(idx, dtype=np.int64)
    if len(idx) < 30:
        raise InvalidInputError(f"only {len(idx)} days with weather and a full history to learn from; "
                                "the planner needs at least 30")
    raw = sequence_tensor(data, idx) if kind == "rnn" else day_matrix(data, idx)
    scaler = Scaler.fit(raw)
    X = scaler.transform(raw)
    y = data.classes[idx]
    if kind == "perceptron":
        model = nm.fit_perceptron(X, (y != 0).astype(np.float64), epochs=opts.perceptron_epochs, lr=1.0,
                                  seed=opts.seed, pocket=True)
        return PlannerModel(kind, model, scaler, opts)
    net = _network(kind, X.shape[-1], opts)
    cut = _split(len(X))
    common = dict(loss="cross_entropy", optimizer=nm.adam(opts.lr), batch_size=opts.batch_size, seed=opts.seed,
                  dtype="float64", l2=opts.rnn_l2 if kind == "rnn" else opts.l2, verbose=verbose)
    probe = nm.fit(net, X[:cut], y[:cut], epochs=opts.rnn_epochs if kind == "rnn" else opts.epochs,
                   validation_data=(X[cut:], y[cut:]), early_stopping=nm.EarlyStopping(patience=opts.patience),
                   **common)
    best = 1 + int(np.argmin([h["val_loss"] for h in probe.history]))
    model = nm.fit(net, X, y, epochs=best, **common)
    return PlannerModel(kind, model, scaler, opts)
