# A chapter of the nomagic tour (`nomagic tour perceptron`); its notebook is made from this file.

# %% [markdown]
# # A perceptron learns "train or rest"
#
# The training planner's question, made small: will the athlete train tomorrow, or rest? One
# step neuron reads a few things known the evening before and answers 1 (train) or 0 (rest).
# It learns by Rosenblatt's perceptron rule, one day at a time:
#
#     ŷ = step(w · x + b)      w ← w + (y − ŷ) · x      b ← b + (y − ŷ)
#
# A right answer changes nothing; a wrong one moves the line towards the day it got wrong.
# The data is the planner's shipped data: four years of Seattle weather and a generated
# athlete's log.

# %%
import numpy as np

import nomagic as nm
from nomagic.apps.planner import dataset, features, logfile, shipped
from nomagic.apps.tour.show import show, table, vec

data = dataset.build(logfile.read_log(None), shipped.seattle_weather())
days = features.sample_days(data)  # days with three weeks of history before them, and weather
columns = ["weekday: Monday", "weekday: Saturday", "max temperature", "precipitation", "form (TSB)",
           "acute:chronic ratio"]
X_raw = features.day_matrix(data, days)[:, [features.DAY_FEATURES.index(c) for c in columns]]
y = (data.classes[days] != 0).astype(float)  # class 0 is rest: 1 = train, 0 = rest

test = days >= len(data) - 365  # the last year is kept back to test on
scaler = features.Scaler.fit(X_raw[~test])  # standardise with the training days' mean and spread
X = scaler.transform(X_raw)
X_train, y_train, X_test, y_test = X[~test], y[~test], X[test], y[test]
show(f"{len(X_train)} training days, {len(X_test)} test days; features: {', '.join(columns)}",
     f"share of training days the athlete trained: {y_train.mean():.3f}")

# %% [markdown]
# Start from all-zero weights and run the rule for ten epochs (passes over the training days,
# in a shuffled order each time), counting the mistakes made on the way.

# %%
def accuracy(params, X, y):
    w, b = params["neuron.weight"][:, 0], params["neuron.bias"][0]
    return float(np.mean((X @ w + b >= 0) == y))


params = nm.Params({"neuron.weight": np.zeros((len(columns), 1)), "neuron.bias": np.zeros(1)})
rng = np.random.default_rng(0)
epochs = []
for epoch in range(1, 11):
    params, mistakes = nm.perceptron_epoch(params, X_train, y_train, lr=1.0, order=rng.permutation(len(X_train)))
    epochs.append({"epoch": epoch, "mistakes": mistakes, "train": accuracy(params, X_train, y_train),
                   "test": accuracy(params, X_test, y_test), "params": params})
show(table(["epoch", "mistakes during the pass", "train accuracy after", "test accuracy after"],
           [[e["epoch"], e["mistakes"], e["train"], e["test"]] for e in epochs]))

# %% [markdown]
# The mistakes do not die out. Were there a line (a plane, with six features) that put every
# training day on its right side, the rule would find one and stop; real days overlap, so each
# pass keeps moving the line, and the accuracy jumps about. The rule's last line is simply where
# it stopped; Gallant's *pocket* variant keeps the best line seen after any epoch.

# %%
final = epochs[-1]
pocket = max(epochs, key=lambda e: e["train"])
always_train = float(np.mean(y_test == 1))
show(table(["model", "test accuracy"],
           [["perceptron after the last epoch", final["test"]],
            [f"pocket: the best epoch on the training days ({pocket['epoch']})", pocket["test"]],
            ["always say 'train'", always_train]]),
     f"the pocket's weights {vec(pocket['params']['neuron.weight'][:, 0])}, "
     f"bias {pocket['params']['neuron.bias'][0]:.3f}")
