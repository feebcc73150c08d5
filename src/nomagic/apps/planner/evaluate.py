"""How good are the models? A time-based hold-out: train on every day before the last year of
the log, score on the last year, beside the baselines an honest reader would ask about:

* ``majority`` — always the most common class of the training days, with the training
  frequencies as probabilities;
* ``same weekday last week`` — the class of the day a week earlier, with probabilities from how
  often each class followed it in the training days;
* ``logistic regression`` and ``gradient-boosted trees`` — scikit-learn's
  ``LogisticRegression`` and ``HistGradientBoostingClassifier`` on the same day features as
  the multi-layer network (needs scikit-learn: ``pip install 'nomagic[examples]'``).

Two tasks: the class (rest, easy, long, hard), and the perceptron's question "train or rest?"
(a class model answers it with 1 − p(rest)). On days the shipped generator decided by a rule
that looks at past days, the class accuracy is reported apart: that is where reading the
history (the recurrent network) should pay.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nomagic.errors import InvalidInputError, require

from .dataset import PlannerData, build
from .features import WINDOW, Scaler, day_matrix, sample_days
from .metrics import scores
from .models import MODELS, PlannerModel, TrainOptions, train
from .sessions import CLASSES

HOLDOUT_DAYS = 365
MIN_TRAIN, MIN_HOLDOUT = 60, 30  # days a short log must give the training set and the hold-out
BASELINES = ("majority", "same weekday last week", "logistic regression", "gradient-boosted trees")


@dataclass(frozen=True, eq=False)
class Split:
    """Training and hold-out days (indices into the data), in time order."""

    train: np.ndarray
    holdout: np.ndarray


def holdout_split(data: PlannerData, days: int = HOLDOUT_DAYS) -> Split:
    """The last ``days`` days of the log (a year) are the hold-out and the days before them the
    training set; a log too short to keep ``MIN_TRAIN`` days for training that way holds out its
    last fifth instead (at least ``MIN_HOLDOUT`` days)."""
    idx = sample_days(data)
    n = len(idx)
    if n < MIN_TRAIN + MIN_HOLDOUT:
        raise InvalidInputError(
            f"the log has {n} days with weather and {WINDOW} days of history before them; the planner needs at "
            f"least {MIN_TRAIN + MIN_HOLDOUT} such days (a log of about {MIN_TRAIN + MIN_HOLDOUT + WINDOW} days "
            "with weather for each)")
    hold = data.dates[idx] >= data.dates[-1] - (days - 1)
    if (~hold).sum() < MIN_TRAIN:
        hold = np.arange(n) >= n - max(MIN_HOLDOUT, n // 5)
    return Split(idx[~hold], idx[hold])


def _majority(y_train: np.ndarray, n: int, k: int) -> np.ndarray:
    freq = np.bincount(y_train, minlength=k) / len(y_train)
    return np.tile(freq, (n, 1))


def _last_week(data: PlannerData, train: np.ndarray, test: np.ndarray, k: int) -> np.ndarray:
    counts = np.ones((k, k))  # Laplace: every transition seen once
    np.add.at(counts, (data.classes[train - 7], data.classes[train]), 1.0)
    table = counts / counts.sum(axis=1, keepdims=True)
    return table[data.classes[test - 7]]


def _sklearn(kind: str, X_train, y_train, X_test, seed: int) -> np.ndarray:
    require("sklearn", "examples")
    if kind == "logistic regression":
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(max_iter=5000, C=1.0)
    else:
        from sklearn.ensemble import HistGradientBoostingClassifier

        clf = HistGradientBoostingClassifier(random_state=seed)
    clf.fit(X_train, y_train)
    P = np.zeros((len(X_test), len(CLASSES)))
    P[:, clf.classes_] = clf.predict_proba(X_test)
    return P


def baseline_proba(name: str, data: PlannerData, split: Split, seed: int = 0) -> np.ndarray:
    """Class probabilities of baseline ``name`` on the hold-out days."""
    k = len(CLASSES)
    y_train = data.classes[split.train]
    if name == "majority":
        return _majority(y_train, len(split.holdout), k)
    if name == "same weekday last week":
        return _last_week(data, split.train, split.holdout, k)
    if name in ("logistic regression", "gradient-boosted trees"):
        raw_train = day_matrix(data, split.train)
        scaler = Scaler.fit(raw_train)
        X_train, X_test = scaler.transform(raw_train), scaler.transform(day_matrix(data, split.holdout))
        return _sklearn(name, X_train, y_train, X_test, seed)
    raise InvalidInputError(f"unknown baseline {name!r}; choose one of: {', '.join(BASELINES)}")


def binary(P: np.ndarray) -> np.ndarray:
    """Class probabilities as "rest or train" probabilities."""
    return np.column_stack([P[:, 0], 1.0 - P[:, 0]])


@dataclass(frozen=True)
class Row:
    """One line of the evaluation table."""

    name: str
    task: str  # "class" or "train or rest"
    scores: dict
    history_accuracy: float | None = None  # class accuracy on the days history rules decided


def evaluate(data: PlannerData, models: dict[str, PlannerModel] | None = None, *, history_days=None,
             baselines: tuple[str, ...] = BASELINES, options: TrainOptions | None = None,
             engine: str = "tensor") -> list[Row]:
    """The evaluation table: each model and baseline on the hold-out, for both tasks.

    ``models`` trained on the training days (trained here when None); ``history_days`` a boolean
    mask over the data's days marking those decided by history (the shipped generator knows)."""
    split = holdout_split(data)
    models = models or {k: train(k, data, split.train, options) for k in MODELS}
    y = data.classes[split.holdout]
    yb = (y != 0).astype(np.int64)
    hist = None if history_days is None else np.asarray(history_days, bool)[split.holdout]
    rows: list[Row] = []

    def add(name: str, P: np.ndarray, is_binary: bool) -> None:
        if not is_binary:
            h = float(np.mean(P[hist].argmax(1) == y[hist])) if hist is not None and hist.any() else None
            rows.append(Row(name, "class", scores(y, P), h))
            P = binary(P)
        rows.append(Row(name, "train or rest", scores(yb, P)))

    for name in baselines:
        add(name, baseline_proba(name, data, split, (options or TrainOptions()).seed), False)
    for kind, m in models.items():
        add(kind, m.predict_proba(data, split.holdout, engine=engine), kind == "perceptron")
    return rows


def table_markdown(rows: list[Row]) -> str:
    """The table as Markdown, one block per task."""
    out = []
    for task in ("class", "train or rest"):
        sub = [r for r in rows if r.task == task]
        hist = task == "class" and any(r.history_accuracy is not None for r in sub)
        out.append(f"**{task}** (hold-out: the last {HOLDOUT_DAYS} days)\n")
        head = "| model | accuracy | macro-F1 | log loss | Brier | ECE |"
        head += " accuracy on history-rule days |" if hist else ""
        out.append(head)
        out.append("|" + " --- |" * (head.count("|") - 1))
        for r in sub:
            s = r.scores
            line = (f"| {r.name} | {s['accuracy']:.3f} | {s['macro_f1']:.3f} | {s['log_loss']:.3f} | "
                    f"{s['brier']:.3f} | {s['ece']:.3f} |")
            if hist:
                line += f" {r.history_accuracy:.3f} |" if r.history_accuracy is not None else " — |"
            out.append(line)
        out.append("")
    return "\n".join(out)


def shipped_history_days(data: PlannerData) -> np.ndarray:
    """For the shipped log: which days the generator decided by a rule that looks at past days."""
    from .generator import generate
    from .shipped import ATHLETE_LOG_SEED, log_weather

    g = generate(log_weather(), ATHLETE_LOG_SEED)
    pos = np.clip(np.searchsorted(g.dates, data.dates), 0, len(g.dates) - 1)
    return np.isin(np.asarray(g.decided_by)[pos], g.history_rules) & (g.dates[pos] == data.dates)


def main() -> int:
    """``python -m nomagic.apps.planner.evaluate``: the evaluation table on the shipped data."""
    from .logfile import read_log
    from .shipped import seattle_weather

    data = build(read_log(None), seattle_weather())
    print(table_markdown(evaluate(data, history_days=shipped_history_days(data))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
