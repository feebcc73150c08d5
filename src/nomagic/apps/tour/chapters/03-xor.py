# A chapter of the nomagic tour (`nomagic tour xor`); its notebook is made from this file.

# %% [markdown]
# # What one neuron cannot learn
#
# A rule for the weekend: *run if it is dry, or if it is the weekend, but not both* (on a dry
# weekend day the athlete goes hiking instead). Two inputs, each 0 or 1, four cases. It is the
# exclusive or, XOR, and it has an answer for every case, yet the perceptron never learns it.

# %%
import itertools

import numpy as np

import nomagic as nm
from nomagic.apps.tour.show import show, table, vec

X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])  # columns: dry, weekend
y = np.array([0.0, 1.0, 1.0, 0.0])  # run?
show(table(["dry", "weekend", "run?"], [[int(a), int(b), int(t)] for (a, b), t in zip(X, y)]))

# %% [markdown]
# Twenty epochs of the perceptron rule, the four cases in the same order each time.

# %%
params = nm.Params({"neuron.weight": np.zeros((2, 1)), "neuron.bias": np.zeros(1)})
history = []
for epoch in range(1, 21):
    params, mistakes = nm.perceptron_epoch(params, X, y)
    history.append((epoch, mistakes, params["neuron.weight"][:, 0].copy(), float(params["neuron.bias"][0])))
show(table(["epoch", "mistakes", "weights after", "bias after"],
           [[e, m, vec(w, 1), f"{b:.1f}"] for e, m, w, b in history]))
show(f"epochs without a mistake: {sum(m == 0 for _, m, _, _ in history)} of {len(history)}")
repeats = [e for (e, _, w, b), (_, _, w0, b0) in zip(history[1:], history) if np.array_equal(w, w0) and b == b0]
if repeats:
    show(f"from epoch {repeats[0]} on, each pass ends on the same line it started from: the rule goes round "
         "in a circle, making the same mistakes for ever")

# %% [markdown]
# Why it cannot stop: a step neuron says yes where w₁·dry + w₂·weekend + b ≥ 0, one side of a
# straight line. The four cases ask for
#
#     (0, 0) no:   b < 0            (0, 1) yes:  w₂ + b ≥ 0
#     (1, 0) yes:  w₁ + b ≥ 0       (1, 1) no:   w₁ + w₂ + b < 0
#
# Adding the two "yes" lines gives w₁ + w₂ + 2b ≥ 0; adding the two "no" lines gives
# w₁ + w₂ + 2b < 0. Both cannot hold: no line separates the four cases. The same, tried out: the
# best of many thousand lines on a grid still gets one case wrong.

# %%
grid = np.linspace(-2, 2, 21)
best = max((int(np.sum((X @ np.array([w1, w2]) + b >= 0) == y)), (w1, w2, b))
           for w1, w2, b in itertools.product(grid, grid, grid))
show(f"{len(grid) ** 3} lines tried; the best one gets {best[0]} of 4 cases right "
     f"(w = {vec(best[1][:2], 1)}, b = {best[1][2]:.1f})")
