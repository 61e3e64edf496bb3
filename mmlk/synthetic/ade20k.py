"""A mini semantic-segmentation dataset in the ADE20K folder layout.

Layout (what mmseg's ``ADE20KDataset`` reads)::

    images/{training,validation}/ADE_{train,val}_%08d.jpg
    annotations/{training,validation}/ADE_{train,val}_%08d.png   # 0 = ignore, k = ADE class k-1

The scene background gets ADE label 1 (class 0, "wall") and the ``num_classes`` shape classes the
next labels, so the dataset's classes are the first ``num_classes + 1`` ADE20K class names. A config
selects them with ``metainfo=dict(classes=ADE20K_CLASSES[:num_classes + 1])`` (mmseg maps the labels
itself), keeping ``reduce_zero_label=True`` exactly as for the real ADE20K.
"""
import os
import os.path as osp
from typing import Dict

import numpy as np
from PIL import Image

from .common import build_dataset
from .shapes import paint_scene, semantic_map

GENERATOR_VERSION = 2
# The first ADE20K class names (mmseg's ADE20KDataset.METAINFO order); the mini dataset uses a prefix.
ADE20K_CLASSES = ('wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed ', 'windowpane',
                  'grass', 'cabinet', 'sidewalk', 'person')


def make_ade20k(out_dir: str, num_train: int = 320, num_val: int = 64, size: int = 128,
                num_classes: int = 5, seed: int = 0) -> Dict:
    """Write (or reuse) a mini ADE20K-layout dataset and return its summary.

    Args:
        out_dir: Dataset root (``data_root`` in the config).
        num_train, num_val: Number of training / validation images.
        size: Square image size in pixels.
        num_classes: Number of shape classes (the background is one more class).
        seed: Seed of the deterministic generator.
    """
    if not 1 <= num_classes <= len(ADE20K_CLASSES) - 1:
        raise ValueError(f'num_classes must be in [1, {len(ADE20K_CLASSES) - 1}], got {num_classes}')
    spec = dict(layout='ade20k', num_train=num_train, num_val=num_val, size=size,
                num_classes=num_classes, seed=seed, version=GENERATOR_VERSION)

    def write(root: str) -> Dict:
        for split, prefix, count, split_seed in (('training', 'ADE_train', num_train, seed),
                                                 ('validation', 'ADE_val', num_val, seed + 10_000)):
            img_dir = osp.join(root, 'images', split)
            ann_dir = osp.join(root, 'annotations', split)
            os.makedirs(img_dir)
            os.makedirs(ann_dir)
            rng = np.random.default_rng(split_seed)
            for i in range(count):
                # Up to six objects of a fifth to half the image side: the shape classes then cover
                # about half of the pixels instead of a few percent, so a short CPU run learns all of them.
                img, instances = paint_scene(rng, size, size, num_classes, max_objects=6,
                                             min_size=max(4, size // 5), max_size=max(6, size // 2))
                # ADE convention: 0 is "unlabelled"; background -> 1, shape class k -> k + 2.
                seg = semantic_map(instances, size, size, background=1, offset=2)
                name = f'{prefix}_{i:08d}'
                Image.fromarray(img).save(osp.join(img_dir, name + '.jpg'), quality=95)
                Image.fromarray(seg).save(osp.join(ann_dir, name + '.png'))
        return dict(layout='ade20k', root=osp.abspath(out_dir), classes=list(ADE20K_CLASSES[:num_classes + 1]),
                    num_train=num_train, num_val=num_val, size=size)

    return build_dataset(out_dir, spec, write)
