"""``nomagic plan`` and ``nomagic audit``: read the files, train (or reuse) the models, and say
what to do next — or where the data is thin or lopsided.

:func:`run_plan` and :func:`run_audit` return what to print (``output`` on stdout, ``notes`` on
stderr); the command line only parses arguments. Bad input raises a ``NomagicError`` that names
the file before anything is trained or written, the cache included.

What is trained: the perceptron, the multi-layer network and the recurrent network, each twice —
on the days before the last year of the log (to score them on that year, the hold-out, for the
audit) and on every day (to plan). Training always runs on the tensor engine; ``engine``
chooses the engine that runs the trained networks: the hold-out predictions, the
recommendation and the backward pass behind its reasons.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import warnings
from dataclasses import dataclass

import numpy as np

from nomagic.errors import DataFileError, InvalidInputError, UnknownNameError
from nomagic.version import __version__

from . import audit as audit_mod
from . import cache, dataset, evaluate, recommend
from .load import LoadSettings
from .loadcmd import check_plot_target, skipped_note
from .logfile import read_log
from .models import MODELS, PlannerModel, TrainOptions, train
from .records import DailyWeather
from .shipped import seattle_weather
from .textfile import DataFileNote
from .weather import read_weather

SCHEMA_VERSION = 1
ENGINES = ("tensor", "processes")
MODEL_WORDS = {"perceptron": "perceptron (one step neuron: train or rest?)",
               "mlp": "multi-layer network", "rnn": "recurrent network (GRU over the last 3 weeks)"}


@dataclass(frozen=True)
class CommandResult:
    """What a command prints: ``output`` on stdout, each of ``notes`` on stderr."""

    output: str
    notes: tuple[str, ...]
    payload: dict


@dataclass(frozen=True, eq=False)
class Inputs:
    """The files read and the planner's data built from them."""

    data: dataset.PlannerData
    weather: DailyWeather
    forecast: DailyWeather | None
    notes: list


def _read(log: str | None, weather: str | None, forecast: str | None, settings: LoadSettings) -> Inputs:
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataFileNote)
        training_log = read_log(log)
        w = read_weather(weather) if weather is not None else seattle_weather()
        fc = read_weather(forecast) if forecast is not None else None
    notes += [str(c.message) for c in caught if issubclass(c.category, DataFileNote)]
    skipped = skipped_note(training_log)
    if skipped:
        notes.append(skipped)
    data = dataset.build(training_log, w, settings)
    return Inputs(data, w, fc, notes)


def _settings(method: str, hr_rest: float | None, hr_max: float | None, sex: str) -> LoadSettings:
    return LoadSettings(method=method, hr_rest=60.0 if hr_rest is None else float(hr_rest),
                        hr_max=None if hr_max is None else float(hr_max), sex=sex)


def _progress(message: str) -> None:
    if sys.stderr.isatty():
        print(f"nomagic: {message}", file=sys.stderr, flush=True)


def trained_models(data: dataset.PlannerData, options: TrainOptions, notes: list) -> dict[str, PlannerModel]:
    """Every model, for planning (trained on all days) and for the hold-out (``KIND-holdout``):
    from the cache when it holds them, else trained now and cached."""
    key = cache.fingerprint(data, options)
    models, warning = cache.load(key, options)
    if warning:
        notes.append(warning)
    if models is not None:
        return models
    split = evaluate.holdout_split(data)
    everything = np.concatenate([split.train, split.holdout])
    models = {}
    for n, kind in enumerate(MODELS):
        _progress(f"training the {MODEL_WORDS[kind]} ({n + 1} of {len(MODELS)})")
        models[f"{kind}-holdout"] = train(kind, data, split.train, options)
        models[kind] = train(kind, data, everything, options)
    cache.save(key, models)
    return models


def _check_choice(value: str, choices: tuple, what: str) -> str:
    if value not in choices:
        raise UnknownNameError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")
    return value


def _audit(inputs: Inputs, models: dict, kind: str, engine: str, query: DailyWeather | None,
           history_days: int):
    data = inputs.data
    split = evaluate.holdout_split(data)
    m = models[f"{kind}-holdout"]
    P = m.predict_proba(data, split.holdout, engine=engine)
    y_true = data.classes[split.holdout]
    if kind == "perceptron":  # it answers rest or train: score it on that question
        y_true = np.where(y_true == 0, 0, 1)
        pred = np.where(P[:, 1] >= 0.5, 1, 0)
    else:
        pred = P.argmax(axis=1)
    train_idx = np.concatenate([split.train, split.holdout])
    holdout = audit_mod.Holdout(dataset.subset(data.weather, split.holdout), y_true, pred)
    user = inputs.forecast
    return audit_mod.audit(dataset.subset(data.weather, train_idx), data.classes[train_idx],
                           holdout={kind: holdout}, user_weather=user, history_days=history_days, query=query)


def _query(recs: list[recommend.Recommendation]) -> DailyWeather:
    def num(r, key):
        return np.nan if r.weather is None or r.weather[key] is None else float(r.weather[key])

    return DailyWeather(dates=np.array([r.date for r in recs], dtype="datetime64[D]"),
                        temp_max=np.array([num(r, "temp_max") for r in recs]),
                        temp_min=np.array([num(r, "temp_min") for r in recs]),
                        precipitation=np.array([num(r, "precipitation") for r in recs]),
                        wind=np.array([num(r, "wind") for r in recs]),
                        condition=np.array([r.weather["condition"] if r.weather else "unknown" for r in recs]))


def _pct(p: float) -> str:
    return f"{100 * p:.0f}%"


def _weather_text(w: dict | None, source: bool = True) -> str:
    if w is None:
        return "unknown"
    parts = [w["condition"]]
    if w["temp_max"] is not None:
        low = f"/{w['temp_min']:g}" if w["temp_min"] is not None else ""
        parts.append(f"{w['temp_max']:g}{low} °C")
    if w["precipitation"] is not None:
        parts.append(f"{w['precipitation']:g} mm")
    if w["wind"] is not None:
        parts.append(f"wind {w['wind']:g} m/s")
    return ", ".join(parts) + (f" ({w['source']})" if source else "")


def _load_text(load: dict) -> str:
    acwr = "—" if load["acwr"] is None else f"{load['acwr']:.2f}"
    mono = "—" if load["monotony"] is None else f"{load['monotony']:.2f}"
    return (f"fitness (CTL) {load['ctl']:.1f}, fatigue (ATL) {load['atl']:.1f}, form (TSB) {load['tsb']:+.1f}, "
            f"acute:chronic {acwr}, monotony {mono}")


def format_text(recs: list[recommend.Recommendation], kind: str, engine: str, warnings_: list[str]) -> str:
    lines = []
    if len(recs) == 1:
        r = recs[0]
        day = dt.date.fromisoformat(r.date)
        lines.append(f"Recommendation for {day:%A} {r.date} — {MODEL_WORDS[kind]}, {engine} engine")
        lines.append(f"  session:   {r.session.upper()}   ("
                     + ", ".join(f"{c} {_pct(p)}" for c, p in r.probabilities.items()) + ")")
        lines.append(f"  weather:   {_weather_text(r.weather)}")
        lines.append(f"  load in:   {_load_text(r.load)}")
        lines.append("  why (each input's push on the log-probability of the session, by the network's own "
                     "backward pass):")
        for reason in r.reasons:
            value = "" if reason["value"] is None else f" = {reason['value']}"
            lines.append(f"    {reason['push']:+.3f}  {reason['feature'] + value:<44} {reason['direction']}")
    else:
        lines.append(f"Plan for {len(recs)} days from {recs[0].date} — {MODEL_WORDS[kind]}, {engine} engine")
        lines.append(f"  {'date':<15} {'session':<8} {'p':>5}  {'weather':<44} {'CTL':>6} {'ATL':>6} {'TSB':>6} "
                     f"{'ACWR':>5}  top reason")
        for r in recs:
            day = dt.date.fromisoformat(r.date)
            top = r.reasons[0] if r.reasons else None
            acwr = "—" if r.load["acwr"] is None else f"{r.load['acwr']:.2f}"
            reason = (f"{top['feature']}" + ("" if top["value"] is None else f" = {top['value']}")
                      + f" ({top['push']:+.2f})") if top else ""
            lines.append(f"  {day:%a} {r.date} {r.session:<8} {_pct(max(r.probabilities.values())):>5}  "
                         f"{_weather_text(r.weather, source=False)[:44]:<44} {r.load['ctl']:>6.1f} "
                         f"{r.load['atl']:>6.1f} {r.load['tsb']:>+6.1f} {acwr:>5}  {reason}")
    if warnings_:
        lines.append("  warnings:")
        lines += [f"    - {w}" for w in warnings_]
    return "\n".join(lines) + "\n"


def run_plan(log: str | None = None, weather: str | None = None, *, forecast: str | None = None,
             date: dt.date | str | None = None, days: int = 1, model: str = "mlp", engine: str = "tensor",
             plot: str | None = None, as_json: bool = False, method: str = "auto", hr_rest: float | None = None,
             hr_max: float | None = None, sex: str = "male", options: TrainOptions | None = None) -> CommandResult:
    """The recommendation for the day after the log (or ``date``) and, with ``days``, the days after."""
    _check_choice(model, MODELS, "model")
    _check_choice(engine, ENGINES, "engine")
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 28:
        raise InvalidInputError(f"--days must be a whole number from 1 to 28; got {days!r}")
    if isinstance(date, str):
        try:
            date = dt.date.fromisoformat(date)
        except ValueError:
            raise InvalidInputError(f"--date {date!r} is not a date like 2016-01-01") from None
    plot_name = check_plot_target(plot) if plot is not None else None
    options = options or TrainOptions()
    inputs = _read(log, weather, forecast, _settings(method, hr_rest, hr_max, sex))
    notes = list(inputs.notes)
    models = trained_models(inputs.data, options, notes)
    recs = recommend.plan(inputs.data, models[model], date=date, days=days, weather=inputs.weather,
                          forecast=inputs.forecast, engine=engine)
    history = int((np.datetime64(recs[0].date) - inputs.data.dates[0]).astype(int))  # days before the plan
    report = _audit(inputs, models, model, engine, _query(recs), history)
    # the plan names what bears on it; the general thin-group list is `nomagic audit`'s
    relevant = [w for w, k in zip(report.warnings, report.warning_kinds) if k != "thin"]
    warns = [w for r in recs for w in r.warnings] + relevant
    payload = {"schema_version": SCHEMA_VERSION, "nomagic_version": __version__, "model": model, "engine": engine,
               "load_settings": _settings_json(inputs.data.settings)}
    if days == 1:
        payload.update(recs[0].to_json())
        payload["warnings"] = warns
    else:
        payload["plan"] = [r.to_json() for r in recs]
        payload["warnings"] = relevant
    if plot_name is not None:
        _plot(inputs.data, recs, plot_name)
        notes.append(f"drew the performance-management chart with the plan to {plot_name}")
    output = json.dumps(payload, indent=2, allow_nan=False) + "\n" if as_json else \
        format_text(recs, model, engine, warns)
    return CommandResult(output, tuple(notes), payload)


def _settings_json(s: LoadSettings) -> dict:
    return {"method": s.method, "hr_rest": s.hr_rest, "hr_max": s.hr_max, "sex": s.sex, "ctl_days": s.ctl_days,
            "atl_days": s.atl_days}


def _plot(data: dataset.PlannerData, recs: list[recommend.Recommendation], path: str) -> None:
    from .chart import performance_chart
    from .load import project

    table = data.table
    gap = int((np.datetime64(recs[0].date) - table.dates[-1]).astype(int)) - 1
    if gap >= 0:
        table = project(table, [0.0] * gap + [r.planned_load for r in recs])
    first = max(0, len(table) - 180 - len(recs))  # the chart shows the last half year and the plan
    shown = type(table)(**{f: getattr(table, f)[first:] for f in ("dates", "load", "ctl", "atl", "tsb", "acwr",
                                                                  "monotony", "strain", "ramp", "planned")},
                        settings=table.settings)
    try:
        performance_chart(shown, path, title="training load and the plan (dashed)")
    except OSError as exc:
        raise DataFileError(f"{path}: cannot be written ({exc.strerror or exc})") from exc


def run_audit(log: str | None = None, weather: str | None = None, *, forecast: str | None = None,
              model: str = "mlp", engine: str = "tensor", as_json: bool = False, method: str = "auto",
              hr_rest: float | None = None, hr_max: float | None = None, sex: str = "male",
              options: TrainOptions | None = None) -> CommandResult:
    """Where the training data is thin or lopsided, how the model does on each kind of day of the
    hold-out year, and how far the forecast (if given) lies from what the model learned."""
    _check_choice(model, MODELS, "model")
    _check_choice(engine, ENGINES, "engine")
    options = options or TrainOptions()
    inputs = _read(log, weather, forecast, _settings(method, hr_rest, hr_max, sex))
    notes = list(inputs.notes)
    models = trained_models(inputs.data, options, notes)
    report = _audit(inputs, models, model, engine, inputs.forecast, len(inputs.data))
    payload = {"schema_version": SCHEMA_VERSION, "nomagic_version": __version__, "model": model, "engine": engine,
               **audit_mod.to_json(report)}
    output = json.dumps(payload, indent=2, allow_nan=False) + "\n" if as_json else audit_mod.render_text(report)
    return CommandResult(output, tuple(notes), payload)

