"""Small deterministic datasets in the real datasets' folder layouts, for demos and tests.

Command line: ``python -m mmlk.synthetic LAYOUT --out DIR [--num-train N] [--num-val M] [--size S]``.
Each layout module registers its generator in :data:`LAYOUTS` with the signature
``make(out_dir, num_train, num_val, size, seed=0) -> summary dict``.
"""
from typing import Callable, Dict

from .ade20k import ADE20K_CLASSES, make_ade20k
from .cityscapes import CITYSCAPES_CLASSES, make_cityscapes
from .coco import COCO_CATEGORIES, make_coco
from .imagenet import IMAGENET_WNIDS, make_imagenet

LAYOUTS: Dict[str, Callable[..., Dict]] = {
    'ade20k': make_ade20k,
    'imagenet': make_imagenet,
    'cityscapes': make_cityscapes,
    'coco': make_coco,
}

__all__ = ['LAYOUTS', 'make_ade20k', 'ADE20K_CLASSES', 'make_imagenet', 'IMAGENET_WNIDS',
           'make_cityscapes', 'CITYSCAPES_CLASSES', 'make_coco', 'COCO_CATEGORIES']
