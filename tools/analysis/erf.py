#!/usr/bin/env python
"""Effective receptive field (ERF) of any backbone, RepLKNet's method (CVPR 2022, section 4).

    # 1. accumulate the gradient map of the last stage's centre over N images -> .npy (+ the analysis)
    python tools/analysis/erf.py compute MODEL [--checkpoint CKPT] [--images DIR] [--num-images 50]
                                       [--size 1024] [--out erf.npy] [--device cpu|cuda]
    # 2. area ratios at 20/30/50/99% and the heatmap PNG of a saved matrix
    python tools/analysis/erf.py analyze erf.npy [--png erf.png] [--title TEXT]

MODEL is a config file of mmpretrain / mmseg / mmdet (its backbone is used), a type dict such as
"dict(type='mmlk.RepLKNet', arch='31B')" or "dict(type='mmpretrain.ResNet', depth=50)", or a timm model
name (timm:resnet50, replknet_31b). Without --images the images of the config's test dataset are used.
The paper used 50 ImageNet validation images at 1024x1024; on a CPU a smaller --size is much faster.
"""
import argparse
import os
import os.path as osp
import sys
from typing import Iterator, List, Sequence

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    comp = sub.add_parser('compute', help='accumulate the ERF matrix over images and save it (.npy)')
    comp.add_argument('model', help='config file, type dict or timm model name')
    comp.add_argument('--checkpoint', help='weights (whole-model checkpoint for configs; backbone or '
                      'timm weights otherwise). Default: the random initialisation')
    comp.add_argument('--images', help='folder of images (default: the config\'s test dataset)')
    comp.add_argument('--num-images', type=int, default=50, help='images to average over (paper: 50)')
    comp.add_argument('--size', type=int, default=1024, help='input side in pixels (paper: 1024)')
    comp.add_argument('--batch-size', type=int, default=1)
    comp.add_argument('--device', default=None, help='cpu or cuda (default: cuda when available)')
    comp.add_argument('--out', help='output .npy (default: work_dirs/erf/<model name>.npy)')
    comp.add_argument('--no-analyze', action='store_true', help='only save the matrix')
    comp.add_argument('--png', help='heatmap path (default: next to the .npy)')
    ana = sub.add_parser('analyze', help='area ratios and heatmap of a saved ERF matrix')
    ana.add_argument('matrix', help='.npy written by "compute"')
    ana.add_argument('--png', help='heatmap path (default: the .npy path with .png)')
    ana.add_argument('--title', help='heatmap title')
    return parser.parse_args(argv)


def _model_name(spec: str) -> str:
    if spec.endswith('.py'):
        return osp.splitext(osp.basename(spec))[0]
    if spec.startswith(('dict(', '{')):
        from mmlk.analysis.models import parse_type_dict
        cfg = parse_type_dict(spec)
        extra = cfg.get('arch', cfg.get('depth', ''))
        return f'{str(cfg["type"]).split(".")[-1]}{"-" + str(extra) if isinstance(extra, (str, int)) else ""}'
    return spec.replace('timm:', '')


def dataset_images(cfg, limit: int) -> List[str]:
    """Image paths of the config's test (else val) dataset, in dataset order."""
    from mmengine.registry import DATASETS
    for key in ('test_dataloader', 'val_dataloader'):
        loader = cfg.get(key)
        if loader and loader.get('dataset'):
            dataset = DATASETS.build(loader.dataset)
            count = min(limit, len(dataset))
            return [dataset.get_data_info(i)['img_path'] for i in range(count)]
    raise ValueError('the config has no test_dataloader/val_dataloader dataset; pass --images DIR')


def batches(paths: Sequence[str], size: int, batch_size: int, mean, std, device) -> Iterator:
    import torch

    from mmlk.analysis.erf import load_image
    for i in range(0, len(paths), batch_size):
        chunk = [load_image(p, size, mean, std) for p in paths[i:i + batch_size]]
        yield torch.stack(chunk).to(device)


def run_analyze(matrix_path: str, png: str = None, title: str = None) -> str:
    import numpy as np

    from mmlk.analysis.erf import analyze, format_report, save_heatmap
    matrix = np.load(matrix_path)
    result = analyze(matrix)
    print(format_report(result, matrix.shape, osp.splitext(osp.basename(matrix_path))[0]))
    png = png or osp.splitext(matrix_path)[0] + '.png'
    save_heatmap(matrix, png, title=title)
    print(f'heatmap: {png}')
    return png


def run_compute(args: argparse.Namespace) -> str:
    import numpy as np
    import torch

    from mmlk.analysis.erf import compute_erf, list_images
    from mmlk.analysis.models import build_from_spec, eval_mode, last_stage_fn

    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if args.num_images < 1 or args.size < 32 or args.batch_size < 1:
        raise SystemExit('error: --num-images and --batch-size must be >= 1 and --size >= 32')
    built = build_from_spec(args.model, args.checkpoint, backbone_only=args.model.endswith('.py'))
    if args.images:
        paths = list_images(args.images, args.num_images)
    elif built.cfg is not None:
        paths = dataset_images(built.cfg, args.num_images)
    else:
        raise SystemExit('error: --images DIR is needed when MODEL is not a config file')
    if len(paths) < args.num_images:
        print(f'note: only {len(paths)} images available (asked for {args.num_images})')
    model = eval_mode(built.model.to(device))
    for p in model.parameters():
        p.requires_grad_(False)  # only the input gradient is needed: skip every weight gradient
    matrix, used = compute_erf(last_stage_fn(built),
                               batches(paths, args.size, args.batch_size, built.mean, built.std, device),
                               total=len(paths))
    out = args.out or osp.join('work_dirs', 'erf', _model_name(args.model) + '.npy')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    np.save(out, matrix)
    print(f'ERF matrix ({used} images, {args.size}x{args.size}): {out}')
    if not args.no_analyze:
        run_analyze(out, args.png, title=f'{_model_name(args.model)} ERF ({used} images)')
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.command == 'analyze':
        run_analyze(args.matrix, args.png, args.title)
    else:
        run_compute(args)


if __name__ == '__main__':
    main()
