"""Effective receptive field (ERF), the analysis behind RepLKNet's argument (Ding et al., CVPR 2022, Sec. 4).

Method (REFERENCE.md section 4, as in RepLKNet's ``erf/visualize_erf.py`` and ``erf/analyze_erf.py``):

1. For each image, take the last stage's feature map ``f`` (N, C, h, w), sum ``relu(f[:, :, h//2, w//2])``
   over channels, and back-propagate it to the input;
2. ``relu`` the input gradient, sum it over batch and colour channels: one (H, W) map per image;
3. average the maps over the images -> the raw ERF matrix (saved as ``.npy``);
4. analysis: ``log10(x + 1)``, normalise to [0, 1], and report the *high-contribution area ratio* for
   t = 20/30/50/99%: the side of the smallest centred square holding at least t of the total, and that
   square's share of the image area; plus a heatmap of the normalised matrix.
"""
import math
import os
import os.path as osp
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

THRESHOLDS = (0.2, 0.3, 0.5, 0.99)
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')


# ------------------------------------------------------------------------------ inputs
def list_images(folder: str, limit: Optional[int] = None) -> List[str]:
    """Image files under ``folder`` (recursively, sorted for reproducibility)."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'image folder not found: {folder}')
    found = []
    for root, _, files in os.walk(folder):
        found += [osp.join(root, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
    found.sort()
    if not found:
        raise FileNotFoundError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) under {folder}')
    return found[:limit] if limit else found


def read_rgb(path: str, size: int) -> np.ndarray:
    """An RGB uint8 ``(size, size, 3)`` image: the short side resized to ``size``, then centre-cropped."""
    from PIL import Image
    with Image.open(path) as img:
        img = img.convert('RGB')
        w, h = img.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        return np.asarray(img.crop((left, top, left + size, top + size)))


def normalise_rgb(rgb: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(H, W, 3)`` RGB -> normalised ``(3, H, W)`` float tensor; ``mean``/``std`` on the 0-255 scale (the mm
    configs' convention), in RGB order."""
    arr = (rgb.astype(np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


def load_image(path: str, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """:func:`read_rgb` then :func:`normalise_rgb`: a normalised ``(3, size, size)`` model input."""
    return normalise_rgb(read_rgb(path, size), mean, std)


# ------------------------------------------------------------------------------ the gradient map
def input_gradient_map(feature_fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """The (H, W) contribution map of the last-stage centre for one batch (steps 1-2 of the method)."""
    images = images.detach().clone().requires_grad_(True)
    feats = feature_fn(images)
    if feats.dim() != 4:
        raise RuntimeError(f'the feature function returned a {feats.dim()}-D tensor; the ERF needs the (N, C, h, w) '
                           'map of the last stage')
    h, w = feats.shape[-2:]
    centre = torch.relu(feats[:, :, h // 2, w // 2]).sum()
    if not centre.requires_grad:
        raise RuntimeError('the centre of the last feature map does not depend on the input (frozen or '
                           'detached model?)')
    (grad, ) = torch.autograd.grad(centre, images)
    return torch.relu(grad).sum(dim=(0, 1)).float()


def compute_erf(feature_fn: Callable[[torch.Tensor], torch.Tensor], batches: Iterable[torch.Tensor],
                total: Optional[int] = None, progress: bool = True, desc: str = 'ERF') -> Tuple[np.ndarray, int]:
    """Average the contribution maps over image batches (step 3); returns (matrix, images used).

    Batches whose map is not finite are skipped, as upstream does (large untrained models can overflow).

    Args:
        feature_fn: Image batch -> last-stage feature map, see :func:`mmlk.analysis.models.last_stage_fn`.
        batches: Iterable of normalised (N, 3, H, W) tensors on the model's device.
        total: Number of images, for the progress bar.
        progress: Show a tqdm progress bar.
    """
    from tqdm import tqdm
    accum: Optional[torch.Tensor] = None
    used = skipped = 0
    bar = tqdm(total=total, desc=desc, unit='img', disable=not progress, dynamic_ncols=True)
    for batch in batches:
        grad_map = input_gradient_map(feature_fn, batch)
        bar.update(batch.shape[0])
        if not torch.isfinite(grad_map).all():
            skipped += batch.shape[0]
            continue
        accum = grad_map if accum is None else accum + grad_map
        used += batch.shape[0]
        bar.set_postfix(skipped=skipped)
    bar.close()
    if accum is None:
        raise RuntimeError('every image gave a non-finite gradient map; check the checkpoint and the input size')
    return (accum / used).cpu().numpy().astype(np.float64), used


# ------------------------------------------------------------------------------ analysis
def normalise(matrix: np.ndarray) -> np.ndarray:
    """``log10(x + 1)`` scaled to [0, 1] (the paper's display and analysis scale)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f'an ERF matrix is 2-D (H, W), got shape {matrix.shape}')
    if (matrix < 0).any():
        raise ValueError('an ERF matrix is non-negative (ReLU of gradients); is this the right file?')
    data = np.log10(matrix + 1.0)
    peak = data.max()
    return data / peak if peak > 0 else data


def high_contribution_area(data: np.ndarray, threshold: float) -> Tuple[int, float]:
    """Side of the smallest centred square holding ``threshold`` of ``data``'s sum, and its area ratio.

    The square grows one pixel per side from the centre; for an even side the centre is ``H // 2``, as
    upstream. Returns (side, side_h * side_w / (H * W)).
    """
    h, w = data.shape
    total = data.sum()
    if total <= 0:
        raise ValueError('the ERF matrix is all zero: the centre output does not depend on the input')
    ch, cw = h // 2, w // 2
    for r in range(0, max(h, w)):
        top, bottom = max(ch - r, 0), min(ch + r + 1, h)
        left, right = max(cw - r, 0), min(cw + r + 1, w)
        if data[top:bottom, left:right].sum() >= threshold * total - 1e-12 * total:
            return 2 * r + 1, (bottom - top) * (right - left) / float(h * w)
    return max(h, w), 1.0


def analyze(matrix: np.ndarray, thresholds: Sequence[float] = THRESHOLDS) -> Dict[float, Tuple[int, float]]:
    """{threshold: (side, area ratio)} on the normalised matrix (step 4)."""
    data = normalise(matrix)
    return {t: high_contribution_area(data, t) for t in thresholds}


def format_report(result: Dict[float, Tuple[int, float]], shape: Tuple[int, int], name: str = '') -> str:
    lines = [f'ERF {name} ({shape[0]}x{shape[1]} input): high-contribution area ratio'.replace('  ', ' ')]
    for t, (side, ratio) in result.items():
        lines.append(f'  t = {t * 100:4.0f}%: {side:5d} px square, area ratio {ratio:.4f}')
    return '\n'.join(lines)


def save_heatmap(matrix: np.ndarray, path: str, title: Optional[str] = None, max_px: int = 512) -> str:
    """Write the paper's heatmap: ``log10(x+1)`` normalised, colour map RdYlGn, with a colour bar.

    Large matrices are block-averaged to at most ``max_px`` pixels a side first, which keeps the PNG small
    without changing what the eye sees.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    data = normalise(matrix)
    step = max(1, math.ceil(max(data.shape) / max_px))
    if step > 1:
        h, w = (data.shape[0] // step) * step, (data.shape[1] // step) * step
        data = data[:h, :w].reshape(h // step, step, w // step, step).mean(axis=(1, 3))
    fig, ax = plt.subplots(figsize=(4.2, 3.6), dpi=100)
    im = ax.imshow(data, cmap='RdYlGn', vmin=0, vmax=1, interpolation='nearest')
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
