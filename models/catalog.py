"""The registries' contents: explicit lists of real classes, grouped by kind and filled at import.

Each entry carries example parameters: the reference docs show them and the test suite builds every entry
with them, so a new entry is documented and tested the day it is added.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torchvision.transforms as T
import torchvision.transforms.v2 as T2
from PIL import Image, ImageFilter, ImageOps
from torch import nn, optim
from torch.optim import lr_scheduler

from models.registries import Registry

LOSSES = Registry("loss")
OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("lr scheduler")
TRANSFORMS = Registry("transform")
IMAGE_OPS = Registry("image op")
LAYERS = Registry("layer")


class OneHotTargets(nn.Module):
    """A loss that wants float targets shaped like the output, fed class indices like every other loss:
    the trainer and the dry run pass class indices whatever the loss is."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.dim() == 1 and not target.is_floating_point():
            target = nn.functional.one_hot(target, output.shape[1]).to(output.dtype)
        return self.loss(output, target)


def _one_hot_loss(cls: type[nn.Module]) -> Callable[..., nn.Module]:
    def build(*args: Any, **kwargs: Any) -> nn.Module:
        return OneHotTargets(cls(*args, **kwargs))

    build.__signature__ = inspect.signature(cls)  # type: ignore[attr-defined]  # checked like the class itself
    build.__name__ = build.__qualname__ = cls.__name__
    return build


_INDEX_LOSSES = {"CrossEntropyLoss": {"label_smoothing": 0.1}, "NLLLoss": None, "MultiMarginLoss": None}
_ONE_HOT_LOSSES = {
    "MultiLabelSoftMarginLoss": None, "BCEWithLogitsLoss": None, "MSELoss": None, "L1Loss": None,
    "SmoothL1Loss": {"beta": 1.0}, "HuberLoss": {"delta": 1.0}, "KLDivLoss": {"reduction": "batchmean"},
    "PoissonNLLLoss": None,
}


def _fill_losses() -> None:
    # "index": targets are class indices; "one_hot": float targets shaped like the output, made by OneHotTargets.
    LOSSES.add_examples(nn, _INDEX_LOSSES, info={"targets": "index"})
    for name, example in _ONE_HOT_LOSSES.items():
        LOSSES.add(name, _one_hot_loss(getattr(nn, name)), example=dict(example or {}), info={"targets": "one_hot"})


def _fill_optimizers() -> None:
    # LBFGS (needs a closure), SparseAdam (sparse gradients) and Muon (2-D weights only) do not fit a
    # plain training step on any layer list, so they are left out on purpose.
    OPTIMIZERS.add_examples(optim, {
        "SGD": {"lr": 0.01, "momentum": 0.9}, "Adam": {"lr": 0.001}, "AdamW": {"lr": 0.001, "weight_decay": 0.01},
        "Adamax": {"lr": 0.002}, "NAdam": {"lr": 0.002}, "RAdam": {"lr": 0.001}, "RMSprop": {"lr": 0.001},
        "Adagrad": {"lr": 0.01}, "Adadelta": {"lr": 1.0}, "ASGD": {"lr": 0.01}, "Rprop": {"lr": 0.01},
        "Adafactor": {"lr": 0.01},
    }, skip_first=True)  # the first parameter is the model's parameters


def _fill_schedulers() -> None:
    # LambdaLR/MultiplicativeLR take Python callables and SequentialLR/ChainedScheduler take schedulers:
    # none can be spelled in JSON, so they are not offered.
    SCHEDULERS.add_examples(lr_scheduler, {
        "StepLR": {"step_size": 5}, "MultiStepLR": {"milestones": [3, 6]}, "ExponentialLR": {"gamma": 0.9},
        "CosineAnnealingLR": {"T_max": 10}, "LinearLR": {"start_factor": 0.5, "total_iters": 4},
        "ConstantLR": {"factor": 0.5, "total_iters": 2}, "PolynomialLR": {"total_iters": 10, "power": 1.0},
        "OneCycleLR": {"max_lr": 0.01, "total_steps": 100}, "ReduceLROnPlateau": {"patience": 2},
        "CosineAnnealingWarmRestarts": {"T_0": 5},
        "CyclicLR": {"base_lr": 0.001, "max_lr": 0.01, "cycle_momentum": False},
    }, skip_first=True)  # the first parameter is the optimizer


# "pil": works on a PIL image (before ToTensor) and on tensors; "tensor": needs a tensor; "to_tensor": converts.
_TO_TENSOR = {"ToTensor": None, "PILToTensor": None}
_DETERMINISTIC = {
    "Resize": {"size": [32, 32]}, "CenterCrop": {"size": 24}, "Pad": {"padding": 2, "padding_mode": "reflect"},
    "Grayscale": {"num_output_channels": 3}, "GaussianBlur": {"kernel_size": 3}
}
_TENSOR_ONLY = {"Normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
                "ConvertImageDtype": {"dtype": "torch.float32"}, "ToPILImage": None}
_RANDOM = {
    "RandomCrop": {"size": 24, "padding": 2}, "RandomResizedCrop": {"size": 24, "scale": [0.5, 1.0]},
    "RandomHorizontalFlip": None, "RandomVerticalFlip": {"p": 0.5}, "RandomRotation": {"degrees": 15},
    "RandomAffine": {"degrees": 10, "translate": [0.1, 0.1]}, "RandomPerspective": {"distortion_scale": 0.3},
    "ColorJitter": {"brightness": 0.2, "contrast": 0.2}, "RandomGrayscale": {"p": 0.1},
    "RandomInvert": None, "RandomPosterize": {"bits": 4}, "RandomSolarize": {"threshold": 128},
    "RandomAdjustSharpness": {"sharpness_factor": 2}, "RandomAutocontrast": None, "RandomEqualize": None,
    "AutoAugment": {"policy": "AutoAugmentPolicy.IMAGENET"}, "RandAugment": {"num_ops": 2},
    "TrivialAugmentWide": None, "AugMix": None, "ElasticTransform": {"alpha": 20.0},
}
# v2-only names that help: explicit dtype handling and newer augmentations (v2 also accepts PIL images).
_V2_DETERMINISTIC = {"ToImage": None, "Identity": None, "RGB": None}
_V2_TENSOR_ONLY = {"ToDtype": {"dtype": "torch.float32", "scale": True}, "ToPureTensor": None}
_V2_RANDOM = {
    "RandomChannelPermutation": None, "RandomPhotometricDistort": {"p": 0.5}, "RandomZoomOut": {"side_range": [1, 2]},
    "ScaleJitter": {"target_size": [32, 32]}, "RandomShortestSize": {"min_size": [24, 32]},
    "RandomResize": {"min_size": 24, "max_size": 40}, "JPEG": {"quality": [50, 90]},
}
_V2_RANDOM_TENSOR = {"RandomErasing": {"p": 0.5}, "GaussianNoise": {"sigma": 0.05}}


def _fill_transforms() -> None:
    TRANSFORMS.add_examples(T, _TO_TENSOR, info={"input": "pil", "to_tensor": True})
    TRANSFORMS.add_examples(T, _DETERMINISTIC, info={"input": "pil"})
    TRANSFORMS.add_examples(T, _TENSOR_ONLY, info={"input": "tensor"})
    TRANSFORMS.add_examples(T, _RANDOM, random=True, info={"input": "pil"})
    TRANSFORMS.add_examples(T2, {"ToImage": None}, info={"input": "pil", "to_tensor": True})
    TRANSFORMS.add_examples(T2, {k: v for k, v in _V2_DETERMINISTIC.items() if k != "ToImage"}, info={"input": "pil"})
    TRANSFORMS.add_examples(T2, _V2_TENSOR_ONLY, info={"input": "tensor"})
    TRANSFORMS.add_examples(T2, _V2_RANDOM, random=True, info={"input": "pil"})
    TRANSFORMS.add_examples(T2, _V2_RANDOM_TENSOR, random=True, info={"input": "tensor"})


# PIL Image methods that return a new image. Never save/show/thumbnail (in place) or anything that writes.
_IMAGE_METHODS = {
    "resize": {"size": [40, 40], "resample": "Image.ANTIALIAS"}, "convert": {"mode": "RGB"},
    "crop": {"box": [0, 0, 32, 32]}, "rotate": {"angle": 15}, "transpose": {"method": "Image.FLIP_LEFT_RIGHT"},
    "reduce": {"factor": 2}, "effect_spread": {"distance": 2}, "getchannel": {"channel": "R"},
    "quantize": {"colors": 16}, "copy": None, "filter": {"filter": "ImageFilter.BLUR"},
}
_IMAGE_OPS_FUNCTIONS = {
    "autocontrast": None, "equalize": None, "grayscale": None, "pad": {"size": [40, 40]},
    "fit": {"size": [32, 32]}, "contain": {"size": [32, 32]}, "cover": {"size": [32, 32]},
    "expand": {"border": 4}, "mirror": None, "flip": None, "posterize": {"bits": 4},
    "solarize": {"threshold": 128}, "invert": None, "scale": {"factor": 0.5}, "exif_transpose": None,
}
PIL_MODES = tuple(Image.MODES)
# String parameters with a closed set of values: checked before any image is touched.
IMAGE_OP_CHOICES = {"convert": {"mode": PIL_MODES}, "getchannel": {"channel": ("R", "G", "B", "A", "L")}}


def _fill_image_ops() -> None:
    for name, example in _IMAGE_METHODS.items():
        IMAGE_OPS.add(name, getattr(Image.Image, name), skip_first=True, example=dict(example or {}),
                      info={"choices": IMAGE_OP_CHOICES.get(name, {}), "module": "PIL.Image.Image"})
    for name, example in _IMAGE_OPS_FUNCTIONS.items():
        IMAGE_OPS.add(name, getattr(ImageOps, name), skip_first=True, tags=frozenset({"ImageOps"}),
                      example=dict(example or {}), info={"module": "PIL.ImageOps"})


_C = {"in_channels": "auto", "out_channels": 4, "kernel_size": 3, "padding": 1}
_LAYERS_2D = {
    "Conv2d": _C, "ConvTranspose2d": {**_C, "kernel_size": 2, "stride": 2, "padding": 0},
    "Linear": {"in_features": "auto", "out_features": 8}, "LazyLinear": {"out_features": 8}, "Identity": None,
    "BatchNorm2d": {"num_features": "auto"}, "LayerNorm": {"normalized_shape": "auto"},
    "GroupNorm": {"num_groups": 2, "num_channels": "auto"}, "InstanceNorm2d": {"num_features": "auto"},
    "LocalResponseNorm": {"size": 2}, "MaxPool2d": {"kernel_size": 2, "stride": 2}, "AvgPool2d": {"kernel_size": 2},
    "AdaptiveAvgPool2d": {"output_size": 4}, "AdaptiveMaxPool2d": {"output_size": [4, 4]},
    "Dropout": {"p": 0.2}, "Dropout2d": {"p": 0.2}, "AlphaDropout": {"p": 0.1}, "Flatten": {"start_dim": 1},
    "Unflatten": {"dim": 1, "unflattened_size": [2, 2]},
    "ReLU": {"inplace": True}, "ReLU6": None, "LeakyReLU": {"negative_slope": 0.1},
    "PReLU": {"num_parameters": "auto"}, "ELU": None, "SELU": None, "CELU": None, "GELU": {"approximate": "tanh"},
    "SiLU": None, "Mish": None, "Sigmoid": None, "Tanh": None, "Hardswish": None, "Hardsigmoid": None,
    "Softplus": None, "Softmax": {"dim": 1}, "LogSoftmax": {"dim": 1},
    "ZeroPad2d": {"padding": 1}, "ReflectionPad2d": {"padding": 1}, "ReplicationPad2d": {"padding": 1},
    "Upsample": {"scale_factor": 2, "mode": "nearest"}, "PixelShuffle": {"upscale_factor": 2},
    "PixelUnshuffle": {"downscale_factor": 2}, "ChannelShuffle": {"groups": 2},
}
# Layers that want (N, C, L) or (N, C, D, H, W): `info["rank"]` tells the tests what input to give them.
_LAYERS_1D = {"Conv1d": {**_C}, "BatchNorm1d": {"num_features": "auto"}, "MaxPool1d": {"kernel_size": 2},
              "AvgPool1d": {"kernel_size": 2}}
_LAYERS_3D = {"Conv3d": {**_C}, "BatchNorm3d": {"num_features": "auto"}}


def _fill_layers() -> None:
    LAYERS.add_examples(nn, _LAYERS_2D, info={"rank": 4})
    LAYERS.add_examples(nn, _LAYERS_1D, info={"rank": 3})
    LAYERS.add_examples(nn, _LAYERS_3D, info={"rank": 5})


_fill_losses()
_fill_optimizers()
_fill_schedulers()
_fill_transforms()
_fill_image_ops()
_fill_layers()

_FILTERS = ("BLUR", "CONTOUR", "DETAIL", "EDGE_ENHANCE", "EDGE_ENHANCE_MORE", "EMBOSS", "FIND_EDGES", "SHARPEN",
            "SMOOTH", "SMOOTH_MORE")
_DTYPES = ("float32", "float16", "bfloat16", "float64", "uint8", "int64", "float", "half", "double", "long")

# Symbolic values a command may spell as strings, as the older project's commands did. Only these resolve.
SYMBOLS: dict[str, object] = {
    **{f"Image.{m.name}": m for m in Image.Resampling},
    **{f"Image.Resampling.{m.name}": m for m in Image.Resampling},
    **{f"Image.{m.name}": m for m in Image.Transpose},
    **{f"Image.Transpose.{m.name}": m for m in Image.Transpose},
    "Image.ANTIALIAS": Image.Resampling.LANCZOS,  # removed from Pillow 10; the seed still says it
    "Image.LINEAR": Image.Resampling.BILINEAR,
    "Image.CUBIC": Image.Resampling.BICUBIC,
    **{f"ImageFilter.{n}": getattr(ImageFilter, n) for n in _FILTERS},
    **{f"{p}InterpolationMode.{m.name}": m for m in T.InterpolationMode for p in ("", "T.", "transforms.")},
    **{f"{p}AutoAugmentPolicy.{m.name}": m for m in T.AutoAugmentPolicy for p in ("", "T.", "transforms.")},
    **{f"torch.{n}": getattr(torch, n) for n in _DTYPES},
}
