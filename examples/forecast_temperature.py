"""Forecast tomorrow's maximum temperature in Seattle from the last seven days of weather.

    python examples/forecast_temperature.py [--epochs N] [--units N] [--plot FILE]

The data ships with nomagic (NOAA observations 2012–2015, via vega_datasets). The network reads
windows of 7 days × 4 weather columns (precipitation, max and min temperature, wind), each
column standardised with the training years' mean and standard deviation, and predicts the next
day's maximum temperature. It trains on windows whose target day falls in 2012–2014 and is tested
on every day of 2015, against the simplest honest forecast there is: persistence ("tomorrow will
be like today"). A forecast that cannot beat persistence has learned nothing.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import nomagic as nm

COLUMNS = ("precipitation", "temp_max", "temp_min", "wind")
TARGET = COLUMNS.index("temp_max")
DAYS = 7


def build_network(units: int = 16, cell: str = "lstm") -> nm.Network:
    """7 days × 4 features → an LSTM (or GRU) → one number: tomorrow's standardised temp_max."""
    layer = nm.lstm(units) if cell == "lstm" else nm.gru(units)
    return nm.inputs(len(COLUMNS)) | layer | nm.dense(1)


def prepare(weather: nm.Weather, days: int = DAYS):
    """Train and test windows, standardised with the training years' statistics only."""
    train_days = weather.between("2012-01-01", "2014-12-31")
    # test windows may read the last days of 2014: their targets are the 365 days of 2015
    first_test = np.datetime64("2015-01-01") - np.timedelta64(days, "D")
    test_days = weather.between(first_test, "2015-12-31")
    raw_train, raw_test = train_days.as_array(COLUMNS), test_days.as_array(COLUMNS)
    mean, std = raw_train.mean(axis=0), raw_train.std(axis=0)
    X_train, Y_train = nm.windows((raw_train - mean) / std, days, target=TARGET)
    X_test, _ = nm.windows((raw_test - mean) / std, days, target=TARGET)
    _, Y_test = nm.windows(raw_test, days, target=TARGET)  # in °C
    persistence = raw_test[days - 1:-1, TARGET]  # each window's last day: "tomorrow = today"
    dates_test = test_days.dates[days:]
    return X_train, Y_train, X_test, Y_test[:, 0], persistence, dates_test, mean[TARGET], std[TARGET]


def main(epochs: int = 40, units: int = 16, cell: str = "lstm", seed: int = 0, plot: str | None = None,
         verbose: bool = True) -> dict:
    """Train, evaluate on 2015, print a short table; returns the numbers as a dict."""
    t0 = time.perf_counter()
    weather = nm.load_weather()
    X_train, Y_train, X_test, y_test, persistence, dates, mu, sigma = prepare(weather)
    net = build_network(units, cell)
    model = nm.fit(net, X_train, Y_train, loss="mse", optimizer=nm.adam(3e-3), epochs=epochs,
                   batch_size=32, seed=seed, verbose=False)
    forecast = model.predict(X_test)[:, 0] * sigma + mu
    result = {
        "model_mae": float(np.mean(np.abs(forecast - y_test))),
        "persistence_mae": float(np.mean(np.abs(persistence - y_test))),
        "train_windows": int(len(X_train)),
        "test_days": int(len(y_test)),
        "epochs": epochs,
        "seconds": time.perf_counter() - t0,
    }
    if verbose:
        print(f"Seattle, tomorrow's max temperature from the last {DAYS} days "
              f"({cell.upper()} {units}, {epochs} epochs, {len(X_train)} training windows 2012–2014)")
        print(f"{'forecast on 2015 (' + str(len(y_test)) + ' days)':<32}{'MAE °C':>8}")
        print(f"{'persistence (tomorrow = today)':<32}{result['persistence_mae']:>8.2f}")
        print(f"{'nomagic ' + cell.upper():<32}{result['model_mae']:>8.2f}")
        print(f"trained and tested in {result['seconds']:.1f} s")
    if plot:
        _plot(plot, dates, y_test, forecast, persistence, result)
    return result


def _plot(path: str, dates, y, forecast, persistence, result) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--plot needs matplotlib: pip install matplotlib", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.plot(dates, y, color="black", lw=1, label="observed")
    ax.plot(dates, persistence, color="grey", lw=0.8, ls=":",
            label=f"persistence (MAE {result['persistence_mae']:.2f} °C)")
    ax.plot(dates, forecast, color="tab:red", lw=1, label=f"nomagic (MAE {result['model_mae']:.2f} °C)")
    ax.set_ylabel("max temperature (°C)")
    ax.set_title("Seattle 2015: tomorrow's max temperature")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot written to {path}")


def _cli(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--units", type=int, default=16)
    p.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", metavar="FILE", help="save a plot of 2015 (needs matplotlib)")
    args = p.parse_args(argv)
    try:
        main(args.epochs, args.units, args.cell, args.seed, args.plot)
    except nm.NomagicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
