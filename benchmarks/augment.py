"""Augmentation: torchdeck.augment (one fused warp + one lookup table) against
torchvision.transforms.v2, albumentations and kornia, on one CPU thread.

Claim (issue 6): on a 512×512 RGB photo, Affine(rotate ±15°, scale 0.9–1.1) ->
RandomResizedCrop(224) -> FlipX(0.5) -> Brightness(0.2) -> Contrast(0.2) -> Normalize to a float
C×H×W tensor runs >= 3x albumentations with the image alone and >= 2x with mask + keypoints +
boxes. Each library gets its natural input (numpy H×W×C uint8 for torchdeck and albumentations,
a uint8 C×H×W tv_tensor for torchvision, a float batch of one for kornia, whose pipeline
includes that conversion) and returns a normalised float C×H×W tensor.

All peers run in this one process, repeats interleaved (a, b, c, a, b, c, ...), best of each
kept, so slow moments of a noisy machine hit all alike; time is the process's CPU time. Peers that are not installed are skipped
with a note (they are in the ``bench`` extra). Prints ``<name>: ratio <x> vs <peer>`` lines
(our time / theirs: below 1 is faster) and the speed-ups; asserts nothing about time.
"""

from __future__ import annotations

import os
import time
from typing import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from torchdeck import augment as A  # noqa: E402

ROUNDS = 7
SECONDS = 0.4      # per library per round
GOAL_IMAGE, GOAL_TARGETS = 3.0, 2.0  # speed-up over albumentations
MEAN, STD = A.IMAGENET_MEAN, A.IMAGENET_STD


def one_thread() -> None:
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:
        pass


def sample(size: int = 512):
    img, source = A.sample_photo(size)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    mask = (grey > 128).astype(np.uint8) + (grey > 200).astype(np.uint8)  # 3 classes
    g = np.random.default_rng(0)
    kp = g.uniform(20, size - 20, (17, 2))  # a skeleton's worth of points
    xy = g.uniform(0, size - 120, (6, 2))
    boxes = np.concatenate([xy, xy + g.uniform(30, 120, (6, 2))], axis=1)
    labels = np.arange(1, 7)
    return img, mask, kp, boxes, labels, source


# --- the contenders: name -> (image alone, with targets); each a function of nothing ------------
def ours(img, mask, kp, boxes, labels, antialias: bool = True):
    pipe = A.Pipeline(A.Affine(degrees=15, scale=(0.9, 1.1)), A.RandomResizedCrop(224), A.FlipX(0.5),
                      A.Brightness(0.2), A.Contrast(0.2), A.Normalize(MEAN, STD), antialias=antialias)
    return (lambda: pipe(img),
            lambda: pipe(image=img, mask=mask, keypoints=kp, boxes=boxes, labels=labels))


def ours_no_antialias(img, mask, kp, boxes, labels):
    """The same without the prefilter a strong shrink gets by default: the resampling the peers do
    (albumentations and kornia do not antialias; torchvision's RandomResizedCrop does)."""
    return ours(img, mask, kp, boxes, labels, antialias=False)


def torchvision_v2(img, mask, kp, boxes, labels):
    from torchvision import tv_tensors
    from torchvision.transforms import v2 as T

    pipe = T.Compose([T.RandomAffine(degrees=15, scale=(0.9, 1.1)), T.RandomResizedCrop(224, antialias=True),
                      T.RandomHorizontalFlip(0.5), T.ColorJitter(brightness=0.2, contrast=0.2),
                      T.ToDtype(torch.float32, scale=True), T.Normalize(MEAN, STD)])
    x = tv_tensors.Image(torch.from_numpy(img).permute(2, 0, 1).contiguous())
    size = img.shape[:2]
    targets = {"image": x, "mask": tv_tensors.Mask(torch.from_numpy(mask)),
               "keypoints": tv_tensors.KeyPoints(torch.from_numpy(kp).float(), canvas_size=size),
               "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(boxes).float(), format="XYXY", canvas_size=size),
               "labels": torch.from_numpy(labels)}
    return (lambda: pipe(x)), (lambda: pipe(targets))


def albumentations(img, mask, kp, boxes, labels):
    import albumentations as Al
    from albumentations.pytorch import ToTensorV2

    steps = lambda: [Al.Affine(rotate=(-15, 15), scale=(0.9, 1.1), p=1.0),  # noqa: E731
                     Al.RandomResizedCrop(size=(224, 224)), Al.HorizontalFlip(p=0.5),
                     Al.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=1.0),
                     Al.Normalize(mean=MEAN, std=STD), ToTensorV2()]
    alone = Al.Compose(steps())
    full = Al.Compose(steps(), bbox_params=Al.BboxParams(format="pascal_voc", label_fields=["labels"]),
                      keypoint_params=Al.KeypointParams(format="xy", remove_invisible=False))
    return (lambda: alone(image=img)),  (lambda: full(image=img, mask=mask, keypoints=kp, bboxes=boxes, labels=labels))


def kornia(img, mask, kp, boxes, labels):
    import kornia.augmentation as K

    def make(keys):
        return K.AugmentationSequential(
            K.RandomAffine(degrees=15, scale=(0.9, 1.1), p=1.0), K.RandomResizedCrop((224, 224)),
            K.RandomHorizontalFlip(p=0.5), K.ColorJitter(brightness=0.2, contrast=0.2, p=1.0),
            K.Normalize(torch.tensor(MEAN), torch.tensor(STD)), data_keys=keys)

    alone, full = make(["input"]), make(["input", "mask", "keypoints", "bbox_xyxy"])
    t = torch.from_numpy(img).permute(2, 0, 1)
    m = torch.from_numpy(mask)[None, None].float()
    k = torch.from_numpy(kp).float()[None]
    b = torch.from_numpy(boxes).float()[None]
    x = lambda: t.float().div(255)[None]  # noqa: E731  (the conversion is part of the work)
    return (lambda: alone(x())), (lambda: full(x(), m, k, b))


CONTENDERS: dict[str, Callable] = {"torchdeck": ours, "torchdeck/no-aa": ours_no_antialias,
                                   "torchvision.v2": torchvision_v2,
                                   "albumentations": albumentations, "kornia": kornia}


def rate(fn: Callable[[], object]) -> float:
    """Images per second of this process's CPU time, over about SECONDS of it. CPU time, not wall
    time: on a shared machine the wall clock also counts the time other people's work held the
    core (everything runs on one thread here, so CPU time is the work done)."""
    n, t0 = 0, time.process_time()
    while True:
        fn()
        n += 1
        dt = time.process_time() - t0
        if dt >= SECONDS:
            return n / dt


def main() -> None:
    one_thread()
    img, mask, kp, boxes, labels, source = sample()
    print(f"photo: {img.shape[1]}×{img.shape[0]} RGB, {source}; one thread; best of {ROUNDS} rounds")
    runs: dict[str, tuple[Callable, Callable]] = {}
    for name, make in CONTENDERS.items():
        try:
            runs[name] = make(img, mask, kp, boxes, labels)
        except ImportError as e:
            print(f"  {name}: skipped, not installed ({e.name}); it is in the bench extra")
    for fns in runs.values():  # warm up (first calls compile, allocate, import lazily)
        for fn in fns:
            for _ in range(3):
                fn()
    best: dict[tuple[str, int], list[float]] = {}
    for _ in range(ROUNDS):
        for mode in (0, 1):
            for name, fns in runs.items():
                best.setdefault((name, mode), []).append(rate(fns[mode]))
    for mode, label in ((0, "image alone"), (1, "image + mask + 17 keypoints + 6 boxes")):
        print(f"{label}:")
        for name in runs:
            r = best[(name, mode)]
            print(f"  {name:<16} {max(r):8.0f} img/s   (rounds {min(r):.0f}-{max(r):.0f})")
    for mode, tag in ((0, "augment_image"), (1, "augment_targets")):
        for variant, suffix in (("torchdeck", ""), ("torchdeck/no-aa", "_no_antialias")):
            ours_rate = max(best[(variant, mode)])
            for name in runs:
                if name.startswith("torchdeck"):
                    continue
                theirs = max(best[(name, mode)])
                goal = ""
                if name == "albumentations":
                    goal = f"; goal >= {GOAL_IMAGE if mode == 0 else GOAL_TARGETS}x"
                print(f"{tag}{suffix}: ratio {ours_rate and theirs / ours_rate:.3f} vs {name}  "
                      f"({ours_rate / theirs:.1f}x faster{goal})")


# --- batched: a batch of 64 on a tensor (the torch backend) ---------------------------------------
BATCH = 64
BATCH_ROUNDS = 3


def batch_pipeline(filters: bool = False):
    """``filters``: with the batched ItemOps too (blur on half the samples, noise, erasing)."""
    extra = (A.Maybe(A.GaussianBlur((0.1, 2.0))), A.GaussianNoise((0.0, 0.05))) if filters else ()
    tail = (A.RandomErasing(p=0.5),) if filters else ()
    return A.Pipeline(A.Affine(degrees=15, scale=(0.9, 1.1)), A.RandomResizedCrop(224), A.FlipX(0.5),
                      *extra, A.Brightness(0.2), A.Contrast(0.2), A.Normalize(MEAN, STD), *tail)


def ours_batched(images: torch.Tensor, filters: bool = False):
    """Per-sample plans, then one grid_sample per warp round, tensor ops for the colours and one
    batched kernel per ItemOp round."""
    pipe = batch_pipeline(filters)
    return lambda: A.apply_batch(pipe, images)


def ours_per_sample(images: torch.Tensor, filters: bool = False):
    """The OpenCV path sample by sample, from the same uint8 batch (the reference point)."""
    pipe = batch_pipeline(filters)
    hwc = [im.permute(1, 2, 0).cpu().numpy() for im in images]
    return lambda: [pipe(im) for im in hwc]


def kornia_batched(images: torch.Tensor, filters: bool = False):
    import kornia.augmentation as K

    extra = [K.RandomGaussianBlur((13, 13), (0.1, 2.0), p=0.5), K.RandomGaussianNoise(std=0.025, p=1.0)] \
        if filters else []
    tail = [K.RandomErasing(p=0.5)] if filters else []
    pipe = K.AugmentationSequential(
        K.RandomAffine(degrees=15, scale=(0.9, 1.1), p=1.0), K.RandomResizedCrop((224, 224)),
        K.RandomHorizontalFlip(p=0.5), *extra, K.ColorJitter(brightness=0.2, contrast=0.2, p=1.0),
        K.Normalize(torch.tensor(MEAN), torch.tensor(STD)), *tail, data_keys=["input"])
    return lambda: pipe(images.float().div(255))


BATCHED: dict[str, Callable] = {"torchdeck.batch": ours_batched, "torchdeck.per-sample": ours_per_sample,
                                "kornia.batch": kornia_batched}


def main_batched(filters: bool = False) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    img, *_ = sample()
    base = torch.from_numpy(img).permute(2, 0, 1)
    images = torch.stack([torch.roll(base, 8 * i, dims=2) for i in range(BATCH)]).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    what = " with Maybe(blur) + noise + erasing" if filters else ""
    print(f"batch of {BATCH} {img.shape[1]}×{img.shape[0]} RGB uint8 on {device}{what}; "
          f"best of {BATCH_ROUNDS} rounds")
    runs = {}
    for name, make in BATCHED.items():
        try:
            fn = make(images, filters)
        except ImportError as e:
            print(f"  {name}: skipped, not installed ({e.name}); it is in the bench extra")
            continue
        runs[name] = (lambda f: lambda: (f(), sync()))(fn)
        runs[name]()  # warm up
    # On a GPU the work is asynchronous and CPU time misses it: wall time there, CPU time here.
    clock = time.perf_counter if device == "cuda" else time.process_time
    best: dict[str, float] = {}
    for _ in range(BATCH_ROUNDS):
        for name, fn in runs.items():
            t0 = clock()
            fn()
            best[name] = max(best.get(name, 0.0), BATCH / (clock() - t0))
    for name, r in best.items():
        print(f"  {name:<22} {r:8.0f} img/s")
    ours_rate = best["torchdeck.batch"]
    for name, theirs in best.items():
        if name != "torchdeck.batch":
            print(f"augment_batch{BATCH}{'_filters' if filters else ''}: ratio {theirs / ours_rate:.3f} vs {name}  "
                  f"({ours_rate / theirs:.1f}x faster)")


if __name__ == "__main__":
    main()
    main_batched()
    main_batched(filters=True)
