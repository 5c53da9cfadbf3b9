"""Data augmentation (DataAugmentation.jl): typed items moved together, projective transforms
fused into one 3×3 matrix and one warp per item that computes only the output region, colour
changes folded into one lookup table, seeded and picklable, with specs as plain data.

    from torchdeck import augment as A
    pipe = A.Pipeline(A.Affine(degrees=15, scale=(0.9, 1.1)), A.RandomResizedCrop(224), A.FlipX(),
                      A.Brightness(0.2), A.Contrast(0.2), A.Normalize())
    out = pipe(image=img, mask=m, keypoints=kp, boxes=bx, labels=lb, seed=0)
    print(pipe.explain(seed=0))
"""

from torchdeck.augment._base import SKIP, TRANSFORMS, Options, PixelOp, Pointwise, Projective, Transform, register_transform
from torchdeck.augment._colour import (IMAGENET_MEAN, IMAGENET_STD, Brightness, Contrast, Gamma, Grayscale, Hue,
                                       Normalize, Saturation)
from torchdeck.augment._compose import Maybe, OneOf, Pipeline, SomeOf
from torchdeck.augment._crop import CenterCrop, PadDivisible, RandomCrop, RandomResizedCrop
from torchdeck.augment._explain import Explanation
from torchdeck.augment._filters import GaussianBlur, GaussianNoise, RandomErasing
from torchdeck.augment._items import Boxes, Image, Item, Keypoints, Mask
from torchdeck.augment._items3d import Volume, VolumeMask
from torchdeck.augment._kernels import BATCH_KERNELS, KERNELS, find_kernel, register_batch_kernel, register_kernel
from torchdeck.augment._photo import sample_photo, synthetic_photo
from torchdeck.augment._plan import ItemOp, Plan, Step, Values, Warp
from torchdeck.augment._projective3d import (Affine3D, CenterCrop3D, Flip3D, RandomCrop3D, Resize3D, Rotate3D,
                                             Scale3D, Zoom3D)
from torchdeck.augment._projective import (Affine, FlipX, FlipY, Perspective, Resize, Rot90, Rotate, Scale,
                                           ScaleKeepAspect, Shear, Translate, Zoom)
from torchdeck.augment._rng import worker_seed
from torchdeck.augment._spec import transform_from_spec
from torchdeck.augment._torch_backend import apply_batch, sample_seeds

__all__ = [
    # items
    "Item", "Image", "Mask", "Keypoints", "Boxes", "Volume", "VolumeMask",
    # composition
    "Pipeline", "Maybe", "OneOf", "SomeOf",
    # projective (fused into one warp)
    "Rotate", "Zoom", "Scale", "ScaleKeepAspect", "Resize", "Shear", "Translate", "Affine", "Perspective",
    "FlipX", "FlipY", "Rot90", "CenterCrop", "RandomCrop", "RandomResizedCrop", "PadDivisible",
    # 3-D projective, for volumes (fused into one 4×4 warp)
    "Rotate3D", "Affine3D", "Zoom3D", "Scale3D", "Resize3D", "Flip3D", "CenterCrop3D", "RandomCrop3D",
    # pixel
    "Brightness", "Contrast", "Gamma", "Normalize", "Saturation", "Hue", "Grayscale",
    "GaussianBlur", "GaussianNoise", "RandomErasing", "IMAGENET_MEAN", "IMAGENET_STD",
    # plans, specs, extension
    "Plan", "Step", "Warp", "Values", "ItemOp", "Explanation", "Options", "transform_from_spec",
    "Transform", "Projective", "Pointwise", "PixelOp", "SKIP", "TRANSFORMS", "register_transform",
    "KERNELS", "register_kernel", "find_kernel", "BATCH_KERNELS", "register_batch_kernel", "worker_seed", "sample_photo", "synthetic_photo",
    # the batched torch backend
    "apply_batch", "sample_seeds",
]
