"""The ray engine: a network run on Ray actors, beyond one machine (``docs/RAY.md``).

``strategy="model"`` spreads the neuron processes over the workers, each running the processes
engine's neuron state machine (an actor is another transport); ``strategy="data"`` gives each
worker a share of every batch. Ray is an optional dependency (``pip install 'nomagic[ray]'``):
without it every call raises ``MissingDependencyError``.
"""

from .data import DataParallel
from .engine import Trainer, loss_and_grad, predict
from .model import RayNetwork, RoundInfo, Traffic
from .partition import auto_partition, cut_synapses, explicit_partition

__all__ = ["DataParallel", "RayNetwork", "RoundInfo", "Traffic", "Trainer", "auto_partition", "cut_synapses",
           "explicit_partition", "loss_and_grad", "predict"]
