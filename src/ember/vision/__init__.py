"""Computer vision: image and mask blocks, augmentation, image DataLoaders, vision and U-Net learners, interpretation.

``import ember.vision`` imports torch and the modules whose classes can be read back from an exported
model (blocks, transforms, the learner and its model factory), so ``load_learner`` finds them; torchvision,
timm, Pillow and matplotlib load only when a function needs them, and the other names on first use.

>>> from ember.vision import ImageDataLoaders, vision_learner, Resize, aug_transforms   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Imported for their side effect: they register the recipes (and model factory) that exported files name
# (ember.medical's DicomBlock too; it imports pydicom only when a DICOM file is read).
from ember import medical as _medical  # noqa: F401
from ember.vision import augment as _augment  # noqa: F401
from ember.vision import bbox as _bbox  # noqa: F401
from ember.vision import core as _core  # noqa: F401
from ember.vision import gan as _gan  # noqa: F401
from ember.vision import learner as _learner  # noqa: F401
from ember.vision import unet as _unet  # noqa: F401
from ember.vision.models import mnist as _mnist  # noqa: F401

__all__ = [
    # core
    "ImageBlock",
    "PointBlock",
    "PointScaler",
    "load_image",
    "image_to_tensor",
    "save_image",
    "show_image",
    "show_images",
    "show_points",
    "MaskBlock",
    "load_mask",
    "mask_to_tensor",
    "show_mask",
    # bounding boxes
    "BBoxBlock",
    "BBoxLblBlock",
    "BBoxScaler",
    "get_annotations",
    "show_boxes",
    # augment
    "Resize",
    "RandomResizedCrop",
    "RandomCrop",
    "CropPad",
    "rand_pad",
    "IntToFloat",
    "AffineWarp",
    "Lighting",
    "FlipItem",
    "DihedralItem",
    "Flip",
    "Dihedral",
    "Rotate",
    "Zoom",
    "Warp",
    "Brightness",
    "Contrast",
    "Saturation",
    "Hue",
    "RandomErasing",
    "aug_transforms",
    "Normalize",
    "imagenet_stats",
    "mnist_stats",
    "cifar_stats",
    # data
    "ImageDataLoaders",
    "SegmentationDataLoaders",
    # learner
    "vision_learner",
    "VisionLearner",
    "create_head",
    "create_body",
    "create_vision_model",
    "adapt_first_conv",
    # segmentation
    "unet_learner",
    "create_unet_model",
    "DynamicUnet",
    "foreground_acc",
    "Dice",
    "DiceMulti",
    "JaccardCoeff",
    "shapes_segmentation",
    # image to image
    "FeatureLoss",
    "gram_matrix",
    "degrade_images",
    # GANs
    "GANLearner",
    "GeneratorLearner",
    "GANModule",
    "GANLoss",
    "GANTrainer",
    "FixedGANSwitcher",
    "AdaptiveGANSwitcher",
    "AdaptiveLoss",
    "accuracy_thresh_expand",
    "basic_generator",
    "basic_critic",
    "gan_critic",
    "wgan_critic_loss",
    "wgan_generator_loss",
    # interpretation
    "ClassificationInterpretation",
    "SegmentationInterpretation",
    # the training loop's names a vision script needs, re-exported for one-import scripts
    "Learner",
    "MixUp",
    "CutMix",
    # the data block API, re-exported for one-import scripts
    "DataBlock",
    "CategoryBlock",
    "MultiCategoryBlock",
    "RegressionBlock",
    "get_files",
    "get_image_files",
    "RandomSplitter",
    "GrandparentSplitter",
    "FuncSplitter",
    "IndexSplitter",
    "parent_label",
    "RegexLabeller",
    "untar_data",
    "URLs",
]

_MODULES: dict[str, str] = {
    **dict.fromkeys(
        (
            "ImageBlock",
            "PointBlock",
            "PointScaler",
            "load_image",
            "image_to_tensor",
            "save_image",
            "show_image",
            "show_images",
            "show_points",
            "MaskBlock",
            "load_mask",
            "mask_to_tensor",
            "show_mask",
        ),
        "ember.vision.core",
    ),
    **dict.fromkeys(("BBoxBlock", "BBoxLblBlock", "BBoxScaler", "get_annotations", "show_boxes"), "ember.vision.bbox"),
    **dict.fromkeys(
        (
            "Resize",
            "RandomResizedCrop",
            "RandomCrop",
            "CropPad",
            "rand_pad",
            "IntToFloat",
            "AffineWarp",
            "Lighting",
            "FlipItem",
            "DihedralItem",
            "Flip",
            "Dihedral",
            "Rotate",
            "Zoom",
            "Warp",
            "Brightness",
            "Contrast",
            "Saturation",
            "Hue",
            "RandomErasing",
            "aug_transforms",
            "Normalize",
            "imagenet_stats",
            "mnist_stats",
            "cifar_stats",
        ),
        "ember.vision.augment",
    ),
    "ImageDataLoaders": "ember.vision.data",
    "SegmentationDataLoaders": "ember.vision.data",
    "unet_learner": "ember.vision.unet",
    "create_unet_model": "ember.vision.unet",
    "DynamicUnet": "ember.vision.models.unet",
    **dict.fromkeys(("foreground_acc", "Dice", "DiceMulti", "JaccardCoeff"), "ember.metrics"),
    "shapes_segmentation": "ember.data.builtin",
    **dict.fromkeys(("FeatureLoss", "gram_matrix"), "ember.vision.losses"),
    "degrade_images": "ember.vision.restore",
    **dict.fromkeys(
        (
            "GANLearner",
            "GeneratorLearner",
            "GANModule",
            "GANLoss",
            "GANTrainer",
            "FixedGANSwitcher",
            "AdaptiveGANSwitcher",
            "AdaptiveLoss",
            "accuracy_thresh_expand",
            "basic_generator",
            "basic_critic",
            "gan_critic",
            "wgan_critic_loss",
            "wgan_generator_loss",
        ),
        "ember.vision.gan",
    ),
    **dict.fromkeys(
        (
            "get_files",
            "get_image_files",
            "RandomSplitter",
            "GrandparentSplitter",
            "FuncSplitter",
            "IndexSplitter",
            "parent_label",
            "RegexLabeller",
            "untar_data",
            "URLs",
        ),
        "ember.data",
    ),
    **dict.fromkeys(
        ("vision_learner", "VisionLearner", "create_head", "create_body", "create_vision_model", "adapt_first_conv"),
        "ember.vision.learner",
    ),
    "ClassificationInterpretation": "ember.vision.interpret",
    "SegmentationInterpretation": "ember.vision.interpret",
    "Learner": "ember.learner.learner",
    **dict.fromkeys(("MixUp", "CutMix"), "ember.learner.mixup"),
    **dict.fromkeys(("DataBlock", "CategoryBlock", "MultiCategoryBlock", "RegressionBlock"), "ember.data.block"),
}

if TYPE_CHECKING:
    from ember.data import (
        FuncSplitter,
        GrandparentSplitter,
        IndexSplitter,
        RandomSplitter,
        RegexLabeller,
        URLs,
        get_files,
        get_image_files,
        parent_label,
        untar_data,
    )
    from ember.data.block import CategoryBlock, DataBlock, MultiCategoryBlock, RegressionBlock
    from ember.data.builtin import shapes_segmentation
    from ember.learner.learner import Learner
    from ember.learner.mixup import CutMix, MixUp
    from ember.metrics import Dice, DiceMulti, JaccardCoeff, foreground_acc
    from ember.vision.augment import (
        AffineWarp,
        Brightness,
        Contrast,
        CropPad,
        Dihedral,
        DihedralItem,
        Flip,
        FlipItem,
        Hue,
        IntToFloat,
        Lighting,
        Normalize,
        RandomCrop,
        RandomErasing,
        RandomResizedCrop,
        Resize,
        Rotate,
        Saturation,
        Warp,
        Zoom,
        aug_transforms,
        cifar_stats,
        imagenet_stats,
        mnist_stats,
        rand_pad,
    )
    from ember.vision.bbox import BBoxBlock, BBoxLblBlock, BBoxScaler, get_annotations, show_boxes
    from ember.vision.core import (
        ImageBlock,
        MaskBlock,
        PointBlock,
        PointScaler,
        image_to_tensor,
        load_image,
        load_mask,
        mask_to_tensor,
        save_image,
        show_image,
        show_images,
        show_mask,
        show_points,
    )
    from ember.vision.data import ImageDataLoaders, SegmentationDataLoaders
    from ember.vision.gan import (
        AdaptiveGANSwitcher,
        AdaptiveLoss,
        FixedGANSwitcher,
        GANLearner,
        GANLoss,
        GANModule,
        GANTrainer,
        GeneratorLearner,
        accuracy_thresh_expand,
        basic_critic,
        basic_generator,
        gan_critic,
        wgan_critic_loss,
        wgan_generator_loss,
    )
    from ember.vision.interpret import ClassificationInterpretation, SegmentationInterpretation
    from ember.vision.learner import (
        VisionLearner,
        adapt_first_conv,
        create_body,
        create_head,
        create_vision_model,
        vision_learner,
    )
    from ember.vision.losses import FeatureLoss, gram_matrix
    from ember.vision.models.unet import DynamicUnet
    from ember.vision.restore import degrade_images
    from ember.vision.unet import create_unet_model, unet_learner


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
