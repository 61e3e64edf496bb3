"""A mini image-classification dataset in the ImageNet-1k folder layout that mmpretrain reads.

Layout (mmpretrain's ``ImageNet`` dataset with ``split='train'`` / ``split='val'``)::

    train/<wnid>/<wnid>_<n>.JPEG          # one folder per class, as in ILSVRC2012
    val/ILSVRC2012_val_%08d.JPEG          # flat, as in ILSVRC2012
    meta/train.txt                        # "<wnid>/<wnid>_<n>.JPEG <label>" per line
    meta/val.txt                          # "ILSVRC2012_val_%08d.JPEG <label>" per line

Class ``k`` uses the k-th ImageNet-1k synset (``n01440764`` tench, ...) and label ``k``, so labels
index mmpretrain's ``IMAGENET_CATEGORIES`` exactly as for the real dataset and every config works
unchanged apart from ``data_root`` and the number of classes. Each image holds one object drawn by
the shared painter (:mod:`.shapes`): its class decides hue, stripe frequency and preferred shape,
which a small network learns in a few hundred CPU iterations. Classes are balanced (image ``i`` has
class ``i % num_classes``) and the output depends only on the arguments.
"""
import os
import os.path as osp
from typing import Dict

import numpy as np
from PIL import Image

from .common import build_dataset
from .shapes import paint_scene

GENERATOR_VERSION = 1
# The first ten ILSVRC2012 synsets in label order (tench, goldfish, great white shark, tiger shark,
# hammerhead, electric ray, stingray, cock, hen, ostrich).
IMAGENET_WNIDS = ('n01440764', 'n01443537', 'n01484850', 'n01491361', 'n01494475', 'n01496331',
                  'n01498041', 'n01514668', 'n01514859', 'n01518878')
_MAX_ATTEMPTS = 1000


def _paint_one(seed_seq: list, label: int, size: int, num_classes: int) -> np.ndarray:
    """One image showing a single object of class ``label`` (deterministic in ``seed_seq``)."""
    for attempt in range(_MAX_ATTEMPTS):
        rng = np.random.default_rng(seed_seq + [attempt])
        img, instances = paint_scene(rng, size, size, num_classes, max_objects=1)
        # The painter picks the class itself; keep the first draw of the class this image needs.
        if len(instances) == 1 and instances[0].label == label:
            return img
    raise RuntimeError(f'could not paint class {label} in {_MAX_ATTEMPTS} attempts')  # pragma: no cover


def make_imagenet(out_dir: str, num_train: int = 200, num_val: int = 50, size: int = 64,
                  num_classes: int = 5, seed: int = 0) -> Dict:
    """Write (or reuse) a mini ImageNet-layout dataset and return its summary.

    Args:
        out_dir: Dataset root (``data_root`` in the config).
        num_train: Number of training images.
        num_val: Number of validation images.
        size: Square image size in pixels (the configs' pipelines resize to 224/320/384 anyway).
        num_classes: Number of classes, 2 to 10 (the config's head needs ``num_classes`` this large).
        seed: Seed of the deterministic generator.
    """
    if not 2 <= num_classes <= len(IMAGENET_WNIDS):
        raise ValueError(f'num_classes must be in [2, {len(IMAGENET_WNIDS)}], got {num_classes}')
    if num_train < num_classes or num_val < 1:
        raise ValueError(f'need at least one training image per class ({num_classes}) and one '
                         f'validation image, got num_train={num_train}, num_val={num_val}')
    if size < 16:
        raise ValueError(f'size must be at least 16 pixels, got {size}')
    spec = dict(layout='imagenet', num_train=num_train, num_val=num_val, size=size,
                num_classes=num_classes, seed=seed, version=GENERATOR_VERSION)

    def write(root: str) -> Dict:
        os.makedirs(osp.join(root, 'meta'))
        train_lines, val_lines = [], []
        for i in range(num_train):
            label = i % num_classes
            wnid = IMAGENET_WNIDS[label]
            rel = f'{wnid}/{wnid}_{i}.JPEG'
            os.makedirs(osp.join(root, 'train', wnid), exist_ok=True)
            img = _paint_one([seed, 0, i], label, size, num_classes)
            Image.fromarray(img).save(osp.join(root, 'train', rel), format='JPEG', quality=95)
            train_lines.append(f'{rel} {label}')
        os.makedirs(osp.join(root, 'val'))
        for i in range(num_val):
            label = i % num_classes
            rel = f'ILSVRC2012_val_{i + 1:08d}.JPEG'
            img = _paint_one([seed, 1, i], label, size, num_classes)
            Image.fromarray(img).save(osp.join(root, 'val', rel), format='JPEG', quality=95)
            val_lines.append(f'{rel} {label}')
        for name, lines in (('train.txt', train_lines), ('val.txt', val_lines)):
            with open(osp.join(root, 'meta', name), 'w') as f:
                f.write('\n'.join(lines) + '\n')
        return dict(layout='imagenet', root=osp.abspath(out_dir), num_classes=num_classes,
                    wnids=list(IMAGENET_WNIDS[:num_classes]), num_train=num_train, num_val=num_val,
                    size=size)

    return build_dataset(out_dir, spec, write)
