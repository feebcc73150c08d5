"""The processes engine: every neuron a lightweight process that only exchanges messages."""

from .engine import Fault, InjectedCrash, ProcessNetwork, Trainer, format_event, loss_and_grad, predict
from .trace import EventStream, MessageEvent
from .wiring import Wiring, wiring_for

__all__ = ["EventStream", "Fault", "InjectedCrash", "MessageEvent", "ProcessNetwork", "Trainer", "Wiring",
           "format_event", "loss_and_grad", "predict", "wiring_for"]
