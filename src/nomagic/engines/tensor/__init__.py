"""The tensor engine: a network compiled to matrix products over whole batches, in NumPy."""

from .engine import Trainer, loss_and_grad, plan_for, predict

__all__ = ["Trainer", "loss_and_grad", "plan_for", "predict"]
