# A chapter of the nomagic tour (`nomagic tour backprop`); its notebook is made from this file.

# %% [markdown]
# # One step of backpropagation, by hand
#
# How does the network of the last chapter learn? By the chain rule, applied backwards from
# the loss, one layer at a time. Here is one step on the smallest network that has a hidden
# layer, two inputs, two hidden neurons and one output, all sigmoid, for one example, with
# every number written out. Then nomagic's own backward pass computes the same gradient.

# %%
import numpy as np

import nomagic as nm
from nomagic.apps.tour.show import show, table, vec

net = nm.inputs(2, name="x") | nm.dense(2, "sigmoid", name="h") | nm.dense(1, "sigmoid", name="out")
params = nm.Params({"h.weight": np.array([[0.15, 0.25], [0.20, 0.30]]), "h.bias": np.array([0.35, 0.35]),
                    "out.weight": np.array([[0.40], [0.45]]), "out.bias": np.array([0.60])})
x = np.array([0.05, 0.10])  # one example
target = np.array([0.01])  # what the output should be


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


W1, b1, W2, b2 = params["h.weight"], params["h.bias"], params["out.weight"], params["out.bias"]

# %% [markdown]
# **Forward.** Each layer: the weighted sums z = x · W + b, then a = σ(z). The loss is the
# squared error (a₂ − t)² against the target t.

# %%
z1 = x @ W1 + b1
a1 = sigmoid(z1)
z2 = a1 @ W2 + b2
a2 = sigmoid(z2)
loss = float(np.sum((a2 - target) ** 2))
show(f"hidden:  z₁ = x·W₁ + b₁ = {vec(z1, 4)}    a₁ = σ(z₁) = {vec(a1, 4)}",
     f"output:  z₂ = a₁·W₂ + b₂ = {vec(z2, 4)}    a₂ = σ(z₂) = {vec(a2, 4)}",
     f"loss:    (a₂ − t)² = ({a2[0]:.4f} − {target[0]})² = {loss:.6f}")

# %% [markdown]
# **Backward.** The chain rule, from the loss back to each weight. σ'(z) = σ(z)·(1 − σ(z)),
# so each layer's *delta* (the loss's derivative by its weighted sums z) is the derivative
# arriving from above times a·(1 − a). A weight's gradient is its input times the delta of
# the neuron it feeds; a bias's gradient is that delta.

# %%
dloss_da2 = 2 * (a2 - target)  # ∂L/∂a₂
delta2 = dloss_da2 * a2 * (1 - a2)  # ∂L/∂z₂
grad_W2 = np.outer(a1, delta2)  # ∂L/∂W₂ = a₁ᵀ δ₂
grad_b2 = delta2
delta1 = (W2 @ delta2) * a1 * (1 - a1)  # ∂L/∂z₁: the output's delta sent back along W₂
grad_W1 = np.outer(x, delta1)  # ∂L/∂W₁ = xᵀ δ₁
grad_b1 = delta1
show(f"∂L/∂a₂ = 2·(a₂ − t) = {vec(dloss_da2, 5)}",
     f"δ₂ = ∂L/∂a₂ · a₂(1 − a₂) = {vec(delta2, 5)}",
     f"∂L/∂W₂ = a₁ · δ₂ = {vec(grad_W2[:, 0], 5)}      ∂L/∂b₂ = δ₂ = {vec(grad_b2, 5)}",
     f"δ₁ = (W₂ · δ₂) ⊙ a₁(1 − a₁) = {vec(delta1, 5)}",
     f"∂L/∂W₁ = x · δ₁ = {vec(grad_W1.ravel(), 5)} (row by row)      ∂L/∂b₁ = δ₁ = {vec(grad_b1, 5)}")

# %% [markdown]
# **The engine's backward pass**: `net.loss_and_grad` returns the loss and the gradient of
# every parameter. By hand and by the engine, side by side:

# %%
engine_loss, grads = net.loss_and_grad(params, x[None, :], target[None, :], loss="mse")
by_hand = {"h.weight": grad_W1, "h.bias": grad_b1, "out.weight": grad_W2, "out.bias": grad_b2}
rows = [[k, vec(by_hand[k].ravel(), 6), vec(grads[k].ravel(), 6), f"{np.max(np.abs(by_hand[k] - grads[k])):.1e}"]
        for k in by_hand]
show(table(["parameter", "by hand", "net.loss_and_grad", "largest difference"], rows),
     f"loss by hand {loss:.9f}, by the engine {engine_loss:.9f}")
max_difference = max(float(np.max(np.abs(by_hand[k] - grads[k]))) for k in by_hand)
show(f"largest difference over all parameters: {max_difference:.1e}")

# %% [markdown]
# **The step.** Gradient descent moves each parameter a little against its gradient,
# w ← w − η·∂L/∂w, and the loss goes down.

# %%
learning_rate = 0.5
stepped = nm.Params({k: params[k] - learning_rate * grads[k] for k in params})
loss_after, _ = net.loss_and_grad(stepped, x[None, :], target[None, :], loss="mse")
show(f"loss before the step {engine_loss:.6f}, after it {loss_after:.6f}")
