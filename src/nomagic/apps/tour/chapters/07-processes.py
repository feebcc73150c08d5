# A chapter of the nomagic tour (`nomagic tour processes`); its notebook is made from this file.

# %% [markdown]
# # The same network as processes
#
# Nothing in a neuron needs the others' memory: it waits for a value from each of its inputs,
# sums, squashes and sends its output on. So every neuron can be a process of its own, as in
# Erlang and Elixir: isolated, with a mailbox, exchanging only messages. nomagic's processes
# engine runs a network exactly so: a sensor per input, a process per neuron, an actuator
# collecting the outputs and a cortex driving each step, all under a supervisor.

# %%
import numpy as np

import nomagic as nm
from nomagic.apps.tour.show import show, table
from nomagic.engines.processes import Fault

X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])  # dry, weekend
y = np.array([0.0, 1.0, 1.0, 0.0])  # run? (dry or weekend, not both)
net = nm.inputs(2, name="x") | nm.dense(3, "tanh", name="h1") | nm.dense(1, "sigmoid", name="out")
train = {"loss": "binary_cross_entropy", "optimizer": nm.adam(0.1), "epochs": 100, "batch_size": 2, "seed": 0,
         "dtype": "float64", "verbose": False}

on_tensors = nm.fit(net, X, y, engine="tensor", **train)
as_processes = nm.fit(net, X, y, engine="processes", **train)
show(table(["engine", "loss after training", "predictions"],
           [[name, m.history[-1]["loss"], str(np.round(m.predict(X)[:, 0], 3))]
            for name, m in (("tensor (NumPy arrays)", on_tensors), ("processes (one per neuron)", as_processes))],
           digits=6),
     "largest difference between the two engines' trained params: "
     f"{max(float(np.max(np.abs(on_tensors.params[k] - as_processes.params[k]))) for k in on_tensors.params):.1e}")

# %% [markdown]
# **Watching the messages.** With `trace=True` every message is recorded: who sent it to whom,
# its kind and the first values of the mini-batch it carries (one message carries the whole
# batch). The first lines of a forward pass over the four cases:

# %%
pn = nm.ProcessNetwork(net, as_processes.params, trace=True)
try:
    pn.predict(X)
    lines = pn.trace_lines()
finally:
    pn.close()
show(f"{len(lines)} messages for one forward pass; the first {min(20, len(lines))}:", *lines[:20])

# %% [markdown]
# **A crash, survived.** Make the hidden neuron `h1[1]` crash in the middle of its backward
# pass on the third mini-batch. Its supervisor restarts it from the snapshot it took at the
# end of the last step and replays the messages it had received since; the retried step gives
# the very same numbers. Compare with the undisturbed run above:

# %%
crash = Fault("h1[1]", phase="backward", batch=2)
crashed = nm.fit(net, X, y, engine="processes", faults=[crash], **train)
max_difference = max(float(np.max(np.abs(crashed.params[k] - as_processes.params[k]))) for k in crashed.params)
show(f"the fault fired: {crash.times == 0} (crash in {crash.target}, {crash.phase}, mini-batch {crash.batch})",
     f"largest difference from the undisturbed run: {max_difference}",
     f"same loss in every epoch: {[h['loss'] for h in crashed.history] == [h['loss'] for h in as_processes.history]}")
