"""Regenerate the pictures the README shows, with nomagic's own drawing code.

    python docs/images/make_images.py

Needs the ``plot`` and ``examples`` extras (matplotlib; scikit-learn for the digits). Every picture
is trained and drawn from fixed seeds, so a run gives the same pictures again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import nomagic as nm
from nomagic.apps.draw import draw_decision_boundary, draw_history, draw_network, draw_unrolled
from nomagic.data.digits import digits_network, load_digits_split

HERE = Path(__file__).resolve().parent


def digits() -> None:
    """network.png and loss-curves.png: the 64-128-128-10 digits network after training."""
    data = load_digits_split(seed=0)
    model = nm.fit(digits_network(), data.X_train, data.y_train, loss="cross_entropy", optimizer=nm.adam(1e-3),
                   epochs=12, batch_size=32, seed=0, validation_split=0.1, verbose=False)
    draw_network(model, path=HERE / "network.png", title="the digits network after 12 epochs (12 of each layer shown)")
    draw_history(model, HERE / "loss-curves.png", title="digits: loss and accuracy per epoch")


def lstm() -> None:
    """lstm-unrolled.png: a two-unit LSTM that learned to add up a sequence, over three steps."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 6, 1))
    model = nm.fit(nm.inputs(1) | nm.lstm(2) | nm.dense(1, name="out"), X, X.sum(axis=1) / 3, epochs=40,
                   optimizer=nm.adam(0.02), batch_size=32, seed=0, verbose=False)
    draw_unrolled(model, steps=3, path=HERE / "lstm-unrolled.png",
                  title="an LSTM unrolled over 3 steps: dashed synapses carry step t−1 into step t")


def spiral() -> None:
    """decision-boundary.png: three interleaved spiral arms, a 2-24-24-3 softmax network."""
    rng = np.random.default_rng(1)
    n, k = 80, 3
    t = np.tile(np.linspace(0.15, 1.0, n), k)
    arm = np.repeat(np.arange(k), n)
    angle = 4.0 * t + arm * 2 * np.pi / k + rng.normal(scale=0.18, size=n * k)
    X = np.column_stack([t * np.cos(angle), t * np.sin(angle)])
    net = nm.inputs(2) | nm.dense(24, "tanh") | nm.dense(24, "tanh") | nm.dense(k, "softmax")
    model = nm.fit(net, X, np.eye(k)[arm], loss="cross_entropy", optimizer=nm.adam(0.02), epochs=300,
                   batch_size=32, seed=0, verbose=False)
    draw_decision_boundary(model, None, X, arm, path=HERE / "decision-boundary.png", grid=300,
                           title="a 2-24-24-3 network on three spiral arms: the predicted class")


if __name__ == "__main__":
    digits()
    lstm()
    spiral()
    for name in ("network.png", "loss-curves.png", "lstm-unrolled.png", "decision-boundary.png"):
        print(HERE / name)
