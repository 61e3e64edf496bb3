"""A mini instance-segmentation dataset in the COCO 2017 layout.

Layout (what mmdet's ``CocoDataset`` reads with the stock ``coco_instance.py`` /
``coco_detection.py`` dataset settings)::

    train2017/%012d.jpg
    val2017/%012d.jpg
    annotations/instances_train2017.json
    annotations/instances_val2017.json

Every painted shape is one instance with a polygon ``segmentation`` (traced from its visible mask,
one polygon per visible part when an occluding shape cuts it), its ``bbox`` ``[x, y, w, h]`` and
``area``. The annotation files list all 80 COCO categories with their official ids, as the real
ones do, and shape class ``k`` is the k-th of them (1 person, 2 bicycle, 3 car, ...): mmdet maps it
to label ``k`` and a config runs with its own ``num_classes=80`` (the COCO metric can then score
predictions of any of the 80 labels). The scene background is not an object.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional

import cv2
import numpy as np
from PIL import Image

from .common import build_dataset
from .shapes import paint_scene

GENERATOR_VERSION = 2
# The 80 COCO 2017 categories in mmdet's CocoDataset.METAINFO order. Their official ids run from 1
# to 90 with ten gaps (ids of categories dropped before the 2014 release).
COCO_CLASSES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog',
    'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella',
    'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
    'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket', 'bottle',
    'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange',
    'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant', 'bed',
    'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone',
    'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors',
    'teddy bear', 'hair drier', 'toothbrush')
_UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
COCO_CATEGORIES = tuple(zip(COCO_CLASSES, (i for i in range(1, 91) if i not in _UNUSED_IDS)))


def _shoelace(points: np.ndarray) -> float:
    """Area enclosed by a closed polygon given as an ``(N, 2)`` array of vertices."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _polygons(mask: np.ndarray, min_area: float = 1.0) -> List[np.ndarray]:
    """Outer contours of a binary mask as ``(N, 2)`` vertex arrays, one per visible part.

    Vertices are the centres of the mask's boundary pixels: in COCO's continuous coordinates pixel
    column ``c`` spans ``[c, c + 1)``, so its centre is ``x = c + 0.5``. Parts that enclose less than
    ``min_area`` (slivers left by an occluding shape, one-pixel lines) are dropped, because a polygon
    cannot describe them.
    """
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    parts = []
    for contour in contours:
        pts = contour.reshape(-1, 2).astype(np.float64) + 0.5
        if len(pts) >= 3 and _shoelace(pts) >= min_area:
            parts.append(pts)
    return parts


def _annotation(mask: np.ndarray, ann_id: int, image_id: int, category_id: int,
                min_area: float = 4.0) -> Optional[Dict]:
    """One COCO annotation for a visible instance mask, or None if its polygons are too small.

    As in the real COCO annotations, ``bbox`` (``[x, y, w, h]``) and ``area`` describe the polygons,
    so the three fields agree with each other.
    """
    parts = _polygons(mask)
    area = sum(_shoelace(pts) for pts in parts)
    if area < min_area:
        return None
    allpts = np.concatenate(parts)
    (x0, y0), (x1, y1) = allpts.min(axis=0), allpts.max(axis=0)
    return dict(id=ann_id, image_id=image_id, category_id=category_id,
                segmentation=[[round(float(v), 2) for v in pts.reshape(-1)] for pts in parts],
                area=round(area, 2), bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                iscrowd=0)


def make_coco(out_dir: str, num_train: int = 64, num_val: int = 16, size: int = 128,
              num_classes: int = 5, seed: int = 0) -> Dict:
    """Write (or reuse) a mini COCO-instance-layout dataset and return its summary.

    Args:
        out_dir: Dataset root (``data_root`` in the config).
        num_train, num_val: Number of training / validation images.
        size: Image height in pixels; the width is ``size * 4 // 3`` (COCO's usual 4:3 frames).
        num_classes: Number of object categories painted (the first ``num_classes`` COCO categories).
        seed: Seed of the deterministic generator.

    Returns:
        A summary dict (layout, root, categories, image and instance counts).
    """
    if not 1 <= num_classes <= len(COCO_CATEGORIES):
        raise ValueError(f'num_classes must be in [1, {len(COCO_CATEGORIES)}], got {num_classes}')
    if size < 16:
        raise ValueError(f'size must be at least 16 pixels, got {size}')
    spec = dict(layout='coco', num_train=num_train, num_val=num_val, size=size,
                num_classes=num_classes, seed=seed, version=GENERATOR_VERSION)
    height, width = size, size * 4 // 3
    categories = [dict(id=cid, name=name, supercategory='shape') for name, cid in COCO_CATEGORIES]

    def write(root: str) -> Dict:
        os.makedirs(osp.join(root, 'annotations'))
        counts = {}
        for split, count, split_seed, first_id in (('train2017', num_train, seed, 1),
                                                   ('val2017', num_val, seed + 10_000, 1_000_001)):
            img_dir = osp.join(root, split)
            os.makedirs(img_dir)
            rng = np.random.default_rng(split_seed)
            images, annotations = [], []
            for i in range(count):
                image_id = first_id + i
                img, instances = paint_scene(rng, height, width, num_classes)
                file_name = f'{image_id:012d}.jpg'
                Image.fromarray(img).save(osp.join(img_dir, file_name), quality=95)
                images.append(dict(id=image_id, file_name=file_name, height=height, width=width))
                for inst in instances:
                    ann = _annotation(inst.mask, len(annotations) + 1, image_id,
                                      categories[inst.label]['id'])
                    if ann is not None:
                        annotations.append(ann)
            with open(osp.join(root, 'annotations', f'instances_{split}.json'), 'w') as f:
                json.dump(dict(info=dict(description='mmlk mini COCO', version=str(GENERATOR_VERSION)),
                               licenses=[], images=images, annotations=annotations,
                               categories=categories), f)
            counts[split] = dict(images=len(images), instances=len(annotations))
        return dict(layout='coco', root=osp.abspath(out_dir), classes=list(COCO_CLASSES[:num_classes]),
                    counts=counts, height=height, width=width)

    return build_dataset(out_dir, spec, write)
