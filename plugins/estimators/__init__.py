"""Built-in estimators: the exact velocity, a network trained by flow or score matching (``neural``), any
torch callable (``torch_module``) and a diffusers model."""

from .diffusers_model import DiffusersModel
from .exact import Exact
from .neural import Neural
from .torch_module import TorchModule

__all__ = ["DiffusersModel", "Exact", "Neural", "TorchModule"]
