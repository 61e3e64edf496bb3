"""Segmentation result pictures: input | ground truth | prediction, in the dataset's class colours, with a legend.

Images and labels come from the config's test dataset through its own pipeline, so the ground truth is
exactly what the metric compares against (class subsets remapped, ignored pixels shown black).
"""
import os
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np
import torch

from .models import eval_mode

IGNORE_COLOUR = (0, 0, 0)


def colourise(label: np.ndarray, palette: Sequence[Sequence[int]], ignore_index: int = 255) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 colours; ``ignore_index`` pixels black."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:len(palette)] = np.asarray(palette, np.uint8)[:256]
    lut[ignore_index % 256] = IGNORE_COLOUR
    return lut[label.astype(np.int64).clip(0, 255)]


def save_panel(image: np.ndarray, gt: np.ndarray, pred: np.ndarray, classes: Sequence[str],
               palette: Sequence[Sequence[int]], path: str, title: str = '') -> str:
    """One PNG: three panels and a legend of the classes present in either map."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 3.0), dpi=80)
    for ax, pic, name in zip(axes, (image, colourise(gt, palette), colourise(pred, palette)),
                             ('input', 'ground truth', 'prediction')):
        ax.imshow(pic, interpolation='nearest')
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    present = sorted(set(np.unique(gt).tolist()) | set(np.unique(pred).tolist()))
    handles = [Patch(color=np.asarray(palette[i]) / 255., label=classes[i]) for i in present if i < len(classes)]
    if 255 in present:
        handles.append(Patch(color=IGNORE_COLOUR, label='ignored'))
    fig.legend(handles=handles, loc='lower center', ncol=min(len(handles), 7), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


@torch.no_grad()
def save_predictions(built, out_dir: str, num_images: int = 4, prefix: str = 'val') -> List[str]:
    """Predict the first ``num_images`` of the config's test dataset and save one panel PNG each.

    Args:
        built: :class:`mmlk.analysis.models.BuiltModel` of an mmseg config (with its weights loaded).
        out_dir: Where the PNGs go (``{prefix}_{i}.png``).
    """
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DATASETS
    if built.scope != 'mmseg':
        raise ValueError(f'prediction pictures need an mmseg config, got scope {built.scope!r}')
    cfg = built.cfg
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    classes = dataset.metainfo['classes']
    palette = dataset.metainfo['palette']
    paths = []
    model = eval_mode(built.model)
    for i in range(min(num_images, len(dataset))):
        data = pseudo_collate([dataset[i]])
        sample = model.test_step(data)[0]
        pred = sample.pred_sem_seg.data[0].cpu().numpy()
        gt = sample.gt_sem_seg.data[0].cpu().numpy()
        image = _read_rgb(sample.img_path, pred.shape)
        name = osp.splitext(osp.basename(sample.img_path))[0]
        paths.append(save_panel(image, gt, pred, classes, palette, osp.join(out_dir, f'{prefix}_{i}_{name}.png'),
                                title=name))
    return paths


def _read_rgb(path: str, shape: Optional[Sequence[int]] = None) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as img:
        img = img.convert('RGB')
        if shape is not None and img.size != (shape[1], shape[0]):
            img = img.resize((shape[1], shape[0]), Image.BILINEAR)
        return np.asarray(img)
