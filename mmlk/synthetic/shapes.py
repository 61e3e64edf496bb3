"""Deterministic synthetic scenes: textured backgrounds with coloured shapes of a few classes.

Every mini dataset (ADE20K, Cityscapes, COCO, ImageNet layouts) draws from this one painter, so
they share one learnable signal: each foreground class has its own hue family, texture frequency
and preferred shape, placed at random positions and sizes over a noisy, smoothly varying background.
A model has to use colour *and* local texture to separate them, but a few hundred 128 px images are
enough for a small network to learn it on a CPU in minutes.
"""
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

SHAPE_KINDS = ('ellipse', 'rectangle', 'triangle')


@dataclass
class Instance:
    """One painted object: its class index (0-based among foreground classes) and binary mask."""
    label: int
    mask: np.ndarray  # (H, W) bool


def _class_colour(label: int, num_classes: int) -> np.ndarray:
    """A saturated RGB colour per class, spread evenly around the hue circle."""
    hue = label / max(num_classes, 1)
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6.0) % 6.0
    rgb = 1.0 - np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return 40.0 + 190.0 * rgb


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A muted, smoothly varying background with fine noise (no foreground hue dominates)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(70, 150, size=3)
    ramp = rng.uniform(-0.25, 0.25, size=(2, 3))
    img = base + xx[..., None] * ramp[0] + yy[..., None] * ramp[1]
    freq = rng.uniform(0.02, 0.08)
    img += 15.0 * np.sin(freq * (xx + rng.uniform(0, 50)))[..., None]
    img += rng.normal(0.0, 12.0, size=(height, width, 3))
    return img


def _shape_mask(rng: np.random.Generator, kind: str, height: int, width: int,
                min_size: int, max_size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    h = rng.uniform(min_size, max_size)
    w = rng.uniform(min_size, max_size)
    cy = rng.uniform(h / 2, height - h / 2)
    cx = rng.uniform(w / 2, width - w / 2)
    if kind == 'ellipse':
        return ((yy - cy) / (h / 2)) ** 2 + ((xx - cx) / (w / 2)) ** 2 <= 1.0
    if kind == 'rectangle':
        return (np.abs(yy - cy) <= h / 2) & (np.abs(xx - cx) <= w / 2)
    # Isosceles triangle pointing up: the half-width grows linearly from apex to base.
    top = cy - h / 2
    rel = (yy - top) / h
    return (rel >= 0) & (rel <= 1) & (np.abs(xx - cx) <= rel * w / 2)


def paint_scene(rng: np.random.Generator, height: int, width: int, num_classes: int,
                max_objects: int = 4, min_size: int = 0, max_size: int = 0
                ) -> Tuple[np.ndarray, List[Instance]]:
    """Paint one image.

    Args:
        rng: The random generator (the only source of randomness, so output is deterministic).
        height, width: Image size in pixels.
        num_classes: Number of foreground classes.
        max_objects: At most this many objects (at least one is always painted).
        min_size, max_size: Object extent in pixels; defaults scale with the image (1/6 to 1/2.5).

    Returns:
        ``(image, instances)``: ``image`` is ``(H, W, 3)`` uint8 RGB; ``instances`` lists the objects
        in painting order with their *visible* masks (later objects occlude earlier ones).
    """
    min_size = min_size or max(6, min(height, width) // 6)
    max_size = max_size or max(min_size + 1, int(min(height, width) / 2.5))
    img = _background(rng, height, width)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    instances: List[Instance] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(0, num_classes))
        kind = SHAPE_KINDS[label % len(SHAPE_KINDS)] if rng.random() < 0.7 else \
            SHAPE_KINDS[int(rng.integers(0, len(SHAPE_KINDS)))]
        mask = _shape_mask(rng, kind, height, width, min_size, max_size)
        if not mask.any():
            continue
        # Class-specific stripes: the frequency is part of the signal, the phase is random.
        period = 3.0 + 2.0 * (label % 4)
        stripes = np.sin((xx + yy) * (2 * np.pi / period) + rng.uniform(0, 2 * np.pi))
        colour = _class_colour(label, num_classes) * rng.uniform(0.85, 1.15)
        texture = colour + 25.0 * stripes[..., None] + rng.normal(0.0, 8.0, size=(height, width, 3))
        img[mask] = texture[mask]
        for prev in instances:
            prev.mask &= ~mask
        instances.append(Instance(label, mask))
    instances = [inst for inst in instances if inst.mask.any()]
    return np.clip(img, 0, 255).astype(np.uint8), instances


def semantic_map(instances: List[Instance], height: int, width: int, background: int,
                 offset: int = 0) -> np.ndarray:
    """Rasterise instances into a label map: ``background`` everywhere else, ``label + offset`` on objects."""
    seg = np.full((height, width), background, dtype=np.uint8)
    for inst in instances:
        seg[inst.mask] = inst.label + offset
    return seg
