"""File formats and interop: safetensors, model files, ONNX export, torch conversion."""

from .safetensors import atomic_write_bytes

__all__ = ["atomic_write_bytes"]
