"""nomagic: deep learning with no magic. Neurons, graphs of neurons, engines that run them."""

from .data.weather import Weather, load_weather, windows
from .engines.base import OptState
from .engines.processes import ProcessNetwork
from .errors import (
    CallbackError,
    EmptyDataError,
    EngineError,
    GraphError,
    InvalidInputError,
    LabelError,
    MissingDependencyError,
    ModelFileError,
    NomagicError,
    NonFiniteError,
    ParamsError,
    ShapeError,
    UnknownNameError,
)
from .io.onnx_export import export_onnx
from .io.torch_interop import from_torch_state_dict, to_torch_state_dict, torch_module
from .model.activations import ACTIVATIONS, get_activation
from .model.builder import GraphBuilder, NeuronRef
from .model.dropout import dropout
from .model.graph import Block, Layer, Network, Population
from .model.graph import set_renderer as _set_renderer
from .model.layers import Stage, dense, inputs
from .model.losses import LOSSES, get_loss
from .model.neuron import Neuron
from .model.params import Params
from .model.recurrent import gru, lstm, recurrent
from .train.fit import fit
from .train.handlers import (
    Checkpoint,
    EarlyStopping,
    History,
    PlateauHandler,
    Progress,
    TrainingMetrics,
    Validation,
)
from .train.loop import Callback, Loop
from .train.model import Model, load
from .train.optimizers import SGD, Adam, AdamW, Optimizer, RMSprop, adam, adamw, rmsprop, sgd
from .train.perceptron import fit_perceptron, perceptron_epoch, perceptron_network
from .train.schedules import (
    ReduceLROnPlateau,
    Schedule,
    constant,
    cosine_decay,
    exponential_decay,
    schedule_from_json,
    step_decay,
)
from .version import __version__


def _render(net, params, fmt: str) -> bytes:
    """Draw a network for Jupyter; imports the drawing code (and matplotlib) on first use only."""
    from .apps.draw import render_bytes

    return render_bytes(net, params, fmt)


# model/ may not import apps/, so the repr methods of Network and Model call this through a hook
# (nomagic.model.graph.set_renderer); importing nomagic does not import matplotlib.
_set_renderer(_render)

__all__ = [
    "ACTIVATIONS", "LOSSES", "Block", "EmptyDataError", "EngineError", "GraphError",
    "InvalidInputError", "LabelError", "Layer", "MissingDependencyError", "ModelFileError",
    "Network", "NomagicError", "NonFiniteError", "Params", "ParamsError", "Population",
    "ShapeError", "Stage", "UnknownNameError", "dense", "dropout", "get_activation", "get_loss", "inputs",
    "__version__", "load", "Adam", "OptState", "Optimizer", "SGD", "adam", "sgd",
    "AdamW", "RMSprop", "adamw", "rmsprop", "Schedule", "constant", "step_decay", "exponential_decay",
    "cosine_decay", "schedule_from_json", "ReduceLROnPlateau",
    "EarlyStopping", "Model", "fit", "GraphBuilder", "NeuronRef", "Neuron", "gru", "lstm", "recurrent",
    "export_onnx",
    "Weather", "load_weather", "windows", "from_torch_state_dict", "to_torch_state_dict", "torch_module",
    "ProcessNetwork", "fit_perceptron", "perceptron_epoch", "perceptron_network",
    "Callback", "CallbackError", "Checkpoint", "History", "Loop", "Progress", "TrainingMetrics", "Validation",
    "PlateauHandler",
]
