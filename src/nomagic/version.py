"""The version of nomagic, in one place (model files, ONNX files and caches record it)."""

__version__ = "0.1.0"
