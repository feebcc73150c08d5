"""nomagic: deep learning with no magic. Neurons, graphs of neurons, engines that run them."""

from .activations import ACTIVATIONS, get_activation
from .builder import GraphBuilder, NeuronRef
from .datasets import Weather, load_weather, windows
from .engines.processes import ProcessNetwork
from .errors import (
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
from .files import load
from .graph import Block, Layer, Network, Population
from .layers import Stage, dense, inputs
from .losses import LOSSES, get_loss
from .neuron import Neuron
from .onnx_export import export_onnx
from .optimizers import SGD, Adam, Optimizer, OptState, adam, sgd
from .params import Params
from .recurrent import gru, lstm, recurrent
from .torch_convert import from_torch_state_dict, to_torch_state_dict, torch_module
from .training import EarlyStopping, Model, fit

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS", "LOSSES", "Block", "EmptyDataError", "EngineError", "GraphError",
    "InvalidInputError", "LabelError", "Layer", "MissingDependencyError", "ModelFileError",
    "Network", "NomagicError", "NonFiniteError", "Params", "ParamsError", "Population",
    "ShapeError", "Stage", "UnknownNameError", "dense", "get_activation", "get_loss", "inputs",
    "__version__", "load", "Adam", "OptState", "Optimizer", "SGD", "adam", "sgd",
    "EarlyStopping", "Model", "fit", "GraphBuilder", "NeuronRef", "Neuron", "gru", "lstm", "recurrent",
    "export_onnx",
    "Weather", "load_weather", "windows", "from_torch_state_dict", "to_torch_state_dict", "torch_module",
    "ProcessNetwork",
]
