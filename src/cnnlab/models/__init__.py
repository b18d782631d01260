"""Networks: the registry of named architectures, running a model on images, and model files.

    registry    every network cnnlab can train, by name (build_model, count_parameters)
    timm_nets   timm's pretrained backbones, --model timm:NAME (the pretrained extra)
    inference   uint8 images -> the model's input -> logits, batched
    files       model.safetensors + model.json, written atomically, loaded without running code
    onnx        an exported model.onnx run by onnxruntime
"""

from cnnlab.models.files import ModelInfo, load_model, save_model
from cnnlab.models.registry import MODELS, build, build_model, count_parameters, flops_per_image

__all__ = ["MODELS", "ModelInfo", "build", "build_model", "count_parameters", "flops_per_image", "load_model",
           "save_model"]
