"""The registries' contents: explicit lists of real classes, grouped by kind and filled at import."""

from __future__ import annotations

import torch
import torchvision.transforms as T
from PIL import Image, ImageOps
from torch import nn, optim
from torch.optim import lr_scheduler

from models.registries import Registry

LOSSES = Registry("loss")
OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("lr scheduler")
TRANSFORMS = Registry("transform")
IMAGE_OPS = Registry("image op")
LAYERS = Registry("layer")


def _fill_losses() -> None:
    LOSSES.add_all(nn, [
        "CrossEntropyLoss", "NLLLoss", "MultiMarginLoss", "MultiLabelSoftMarginLoss", "BCEWithLogitsLoss",
        "MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "KLDivLoss",
    ])


def _fill_optimizers() -> None:
    OPTIMIZERS.add_all(optim, [
        "SGD", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Adagrad", "Adadelta", "ASGD", "Rprop",
    ], skip_first=True)  # the first parameter is the model's parameters


def _fill_schedulers() -> None:
    SCHEDULERS.add_all(lr_scheduler, [
        "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR", "ConstantLR",
        "PolynomialLR", "OneCycleLR", "ReduceLROnPlateau", "CosineAnnealingWarmRestarts",
    ], skip_first=True)  # the first parameter is the optimizer


_DETERMINISTIC_TRANSFORMS = [
    "ToTensor", "PILToTensor", "Normalize", "Resize", "CenterCrop", "Pad", "Grayscale", "GaussianBlur",
    "ConvertImageDtype",
]
_RANDOM_TRANSFORMS = [
    "RandomCrop", "RandomResizedCrop", "RandomHorizontalFlip", "RandomVerticalFlip", "RandomRotation",
    "RandomAffine", "RandomPerspective", "ColorJitter", "RandomGrayscale", "RandomErasing", "RandomInvert",
    "RandomPosterize", "RandomSolarize", "RandomAdjustSharpness", "RandomAutocontrast", "RandomEqualize",
    "AutoAugment", "RandAugment", "TrivialAugmentWide", "AugMix", "ElasticTransform",
]


def _fill_transforms() -> None:
    TRANSFORMS.add_all(T, _DETERMINISTIC_TRANSFORMS)
    TRANSFORMS.add_all(T, _RANDOM_TRANSFORMS, random=True)


# PIL Image methods that return a new image; never save/show/anything that writes or leaks.
_IMAGE_METHODS = [
    "resize", "convert", "crop", "rotate", "transpose", "reduce", "effect_spread", "getchannel",
    "quantize", "copy",
]
_IMAGE_OPS_FUNCTIONS = [
    "autocontrast", "equalize", "grayscale", "pad", "fit", "contain", "expand", "mirror", "flip",
    "posterize", "solarize", "invert",
]


def _fill_image_ops() -> None:
    for name in _IMAGE_METHODS:
        IMAGE_OPS.add(name, getattr(Image.Image, name), skip_first=True)
    for name in _IMAGE_OPS_FUNCTIONS:
        IMAGE_OPS.add(name, getattr(ImageOps, name), skip_first=True, tags=frozenset({"ImageOps"}))


def _fill_layers() -> None:
    LAYERS.add_all(nn, [
        "Conv1d", "Conv2d", "Conv3d", "ConvTranspose2d", "Linear", "Bilinear", "LazyLinear", "Identity",
        "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm", "InstanceNorm2d",
        "LocalResponseNorm",
        "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d",
        "Dropout", "Dropout2d", "AlphaDropout", "Flatten", "Unflatten",
        "ReLU", "ReLU6", "LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Sigmoid",
        "Tanh", "Hardswish", "Hardsigmoid", "Softplus", "Softmax", "LogSoftmax",
        "ZeroPad2d", "ReflectionPad2d", "ReplicationPad2d", "Upsample", "PixelShuffle", "ChannelShuffle",
    ])


_fill_losses()
_fill_optimizers()
_fill_schedulers()
_fill_transforms()
_fill_image_ops()
_fill_layers()

# Symbolic values a command may spell as strings, as the older project's commands did.
SYMBOLS: dict[str, object] = {
    **{f"Image.{m.name}": m for m in Image.Resampling},
    **{f"Image.Resampling.{m.name}": m for m in Image.Resampling},
    **{f"Image.{m.name}": m for m in Image.Transpose},
    **{f"Image.Transpose.{m.name}": m for m in Image.Transpose},
    "Image.ANTIALIAS": Image.Resampling.LANCZOS,  # removed from Pillow 10; the seed still says it
    "Image.LINEAR": Image.Resampling.BILINEAR,
    "Image.CUBIC": Image.Resampling.BICUBIC,
    **{f"InterpolationMode.{m.name}": m for m in T.InterpolationMode},
    **{f"T.InterpolationMode.{m.name}": m for m in T.InterpolationMode},
    **{f"torch.{n}": getattr(torch, n) for n in ["float32", "float16", "bfloat16", "float64", "uint8", "int64"]},
    **{f"torch.{n}": getattr(torch, n) for n in ["float", "half", "double", "long"]},
}
