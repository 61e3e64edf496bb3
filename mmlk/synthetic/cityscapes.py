"""A mini semantic-segmentation dataset in the Cityscapes folder layout.

Layout (what mmseg's ``CityscapesDataset`` reads, i.e. after cityscapesscripts'
``createTrainIdLabelImgs``)::

    leftImg8bit/{train,val}/<city>/<city>_%06d_000019_leftImg8bit.png
    gtFine/{train,val}/<city>/<city>_%06d_000019_gtFine_labelTrainIds.png   # train ids, 255 = ignore

Images are twice as wide as high, like the real 2048x1024 frames. The scene background gets train
id 0 ("road") and the ``num_classes`` shape classes the next train ids (1 "sidewalk", 2 "building",
...), so labels index mmseg's 19 Cityscapes classes directly and a config runs with its own
``num_classes=19`` (classes absent from the mini data have no pixels and are left out of the mean IoU).
A thin border of every object is marked 255 (ignore), as the real ground truth leaves unlabelled gaps.
"""
import os
import os.path as osp
from typing import Dict, Tuple

import numpy as np
from PIL import Image

from .common import build_dataset
from .shapes import paint_scene, semantic_map

GENERATOR_VERSION = 1
# mmseg's CityscapesDataset.METAINFO order (train ids 0..18).
CITYSCAPES_CLASSES = ('road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light',
                      'traffic sign', 'vegetation', 'terrain', 'sky', 'person', 'rider', 'car',
                      'truck', 'bus', 'train', 'motorcycle', 'bicycle')
# Real Cityscapes city names, one per split, so paths look exactly like the real ones.
_CITIES: Tuple[Tuple[str, str], ...] = (('train', 'aachen'), ('val', 'frankfurt'))
IGNORE_INDEX = 255


def _boundary(seg: np.ndarray) -> np.ndarray:
    """Pixels whose 4-neighbourhood holds another label (a one-pixel band on each side of an edge)."""
    edge = np.zeros(seg.shape, dtype=bool)
    edge[1:, :] |= seg[1:, :] != seg[:-1, :]
    edge[:-1, :] |= seg[1:, :] != seg[:-1, :]
    edge[:, 1:] |= seg[:, 1:] != seg[:, :-1]
    edge[:, :-1] |= seg[:, 1:] != seg[:, :-1]
    return edge


def make_cityscapes(out_dir: str, num_train: int = 64, num_val: int = 16, size: int = 128,
                    num_classes: int = 5, seed: int = 0) -> Dict:
    """Write (or reuse) a mini Cityscapes-layout dataset and return its summary.

    Args:
        out_dir: Dataset root (``data_root`` in the config).
        num_train, num_val: Number of training / validation frames.
        size: Frame height in pixels; the width is ``2 * size``.
        num_classes: Number of shape classes (the background is one more class), at most 18.
        seed: Seed of the deterministic generator.

    Returns:
        A summary dict (layout, root, classes present, counts, frame size).
    """
    if not 1 <= num_classes <= len(CITYSCAPES_CLASSES) - 1:
        raise ValueError(f'num_classes must be in [1, {len(CITYSCAPES_CLASSES) - 1}], got {num_classes}')
    if size < 8:
        raise ValueError(f'size must be at least 8 pixels, got {size}')
    spec = dict(layout='cityscapes', num_train=num_train, num_val=num_val, size=size,
                num_classes=num_classes, seed=seed, version=GENERATOR_VERSION)
    height, width = size, 2 * size

    def write(root: str) -> Dict:
        for (split, city), count, split_seed in zip(_CITIES, (num_train, num_val), (seed, seed + 10_000)):
            img_dir = osp.join(root, 'leftImg8bit', split, city)
            ann_dir = osp.join(root, 'gtFine', split, city)
            os.makedirs(img_dir)
            os.makedirs(ann_dir)
            rng = np.random.default_rng(split_seed)
            for i in range(count):
                img, instances = paint_scene(rng, height, width, num_classes)
                seg = semantic_map(instances, height, width, background=0, offset=1)
                seg[_boundary(seg)] = IGNORE_INDEX
                stem = f'{city}_{i:06d}_000019'
                Image.fromarray(img).save(osp.join(img_dir, stem + '_leftImg8bit.png'))
                Image.fromarray(seg).save(osp.join(ann_dir, stem + '_gtFine_labelTrainIds.png'))
        return dict(layout='cityscapes', root=osp.abspath(out_dir),
                    classes=list(CITYSCAPES_CLASSES[:num_classes + 1]), num_train=num_train,
                    num_val=num_val, height=height, width=width)

    return build_dataset(out_dir, spec, write)
