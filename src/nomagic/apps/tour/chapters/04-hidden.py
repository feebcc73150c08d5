# A chapter of the nomagic tour (`nomagic tour hidden`); its notebook is made from this file.

# %% [markdown]
# # A hidden layer
#
# What one line cannot do, two can: a few hidden neurons each draw a line, and the output
# neuron combines their answers. The network is built with the pipe, layer after layer.

# %%
import numpy as np

import nomagic as nm
from nomagic.apps.tour.show import show, table, vec

X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])  # dry, weekend
y = np.array([0.0, 1.0, 1.0, 0.0])  # run? (dry or weekend, not both)

net = nm.inputs(2, name="x") | nm.dense(3, "tanh", name="hidden") | nm.dense(1, "sigmoid", name="out")
show(net.summary())

# %% [markdown]
# Trained with backpropagation (next chapter) and the Adam optimizer, on the binary
# cross-entropy loss; seeded, so every run gives the same numbers.

# %%
model = nm.fit(net, X, y, loss="binary_cross_entropy", optimizer=nm.adam(0.1), epochs=300, batch_size=4,
               seed=0, dtype="float64", verbose=False)
show(f"loss after epoch 1: {model.history[0]['loss']:.4f}; after epoch {len(model.history)}: "
     f"{model.history[-1]['loss']:.4f}")

# %% [markdown]
# The predictions on the four cases, and what each hidden neuron says about them (the hidden
# layer is a network of its own: the same pipe, stopped one layer early, with the trained
# hidden weights).

# %%
p = model.predict(X)[:, 0]
hidden_net = nm.inputs(2, name="x") | nm.dense(3, "tanh", name="hidden")
hidden = hidden_net.predict({k: v for k, v in model.params.items() if k.startswith("hidden.")}, X)
show(table(["dry", "weekend", "run?", "network says", "answer", "hidden neurons (tanh)"],
           [[int(a), int(b), int(t), float(q), int(q >= 0.5), vec(h, 2)]
            for (a, b), t, q, h in zip(X, y, p, hidden)]))
show(f"right on {int(np.sum((p >= 0.5) == y))} of 4 cases")
