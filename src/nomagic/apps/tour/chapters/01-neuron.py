# A chapter of the nomagic tour (`nomagic tour neuron`); its notebook is made from this file.

# %% [markdown]
# # One neuron
#
# A neuron takes a few numbers, weighs each one, adds a bias and squashes the sum:
#
#     z = w · x + b        a = activation(z)
#
# Here is one that answers "go for a run?" from two inputs: the day's temperature (in tens of
# °C) and its rain (mm). Warmth pushes towards yes, rain against, and the bias says how keen the
# runner is to begin with.

# %%
import numpy as np

import nomagic as nm
from nomagic.apps.tour.show import show, table, vec

go_for_a_run = nm.Neuron([1.2, -0.8], bias=-1.0, activation="sigmoid")
show(f"weights {vec(go_for_a_run.weights, 1)}, bias {go_for_a_run.bias}, activation {go_for_a_run.activation}")

# %% [markdown]
# Four days. For each, the weighted sum is worked out by hand, then the neuron itself is asked;
# the sigmoid σ(z) = 1 / (1 + e^−z) turns the sum into a number between 0 and 1.

# %%
days = {"18 °C, dry": [1.8, 0.0], "5 °C, dry": [0.5, 0.0], "15 °C, 4 mm rain": [1.5, 4.0], "25 °C, 1 mm": [2.5, 1.0]}
w, b = np.array(go_for_a_run.weights), go_for_a_run.bias
rows = []
for day, x in days.items():
    z = float(w @ np.array(x) + b)  # by hand: the weighted sum
    a = 1 / (1 + np.exp(-z))  # by hand: the sigmoid
    formula = f"z = {w[0]}·{x[0]} + ({w[1]})·{x[1]} + ({b}) = {z:.3f}"
    rows.append([day, formula, f"σ(z) = {a:.3f}", go_for_a_run(x)])
show(table(["day", "weighted sum", "by hand", "nm.Neuron says"], rows))

# %% [markdown]
# With a **step** activation the same neuron answers yes (1) or no (0): yes as soon as the
# weighted sum reaches 0. That is the neuron of the perceptron in the next chapter.

# %%
decide = nm.Neuron(go_for_a_run.weights, bias=go_for_a_run.bias, activation="step")
answers = decide(np.array(list(days.values())))
show(table(["day", "run?"], [[day, "yes" if a else "no"] for day, a in zip(days, answers)]))

# %% [markdown]
# A neuron is also a network of one: `as_network()` gives the network and its parameters, and
# any engine runs it.

# %%
net, params = go_for_a_run.as_network()
show(f"{net}", f"params: {dict((k, v.tolist()) for k, v in params.items())}",
     f"the network's outputs: {vec(net.predict(params, np.array(list(days.values())))[:, 0])}")
