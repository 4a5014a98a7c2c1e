"""fractalsync_models: the model contract, ONNX wrappers and the BeatNet converter.

Depends on no other FractalSync package.
"""

from .anticipator import Anticipator, NonFiniteInputWarning
from .contract import ContractError, load_contract, validate_contract, validate_onnx_model
from .crnn import BeatNetCRNN, ModelNotFoundError
from .export_beatnet import ExportError, export_beatnet
from .paths import fractalsync_home, models_dir
from .torch_zip import TorchZipError, load_state_dict

__all__ = [
    "Anticipator",
    "NonFiniteInputWarning",
    "BeatNetCRNN",
    "ContractError",
    "ExportError",
    "ModelNotFoundError",
    "TorchZipError",
    "export_beatnet",
    "fractalsync_home",
    "load_contract",
    "load_state_dict",
    "models_dir",
    "validate_contract",
    "validate_onnx_model",
]
