#!/usr/bin/env python
"""RepNeXt per-branch feature maps: the input and each ChunkConv branch (identity, S, M, L) in one PNG grid.

    python tools/analysis/feature_maps.py MODEL IMAGE [IMAGE ...] [--checkpoint CKPT] [--stage 0]
                                          [--block -1] [--size 224] [--out feature_maps.png]

MODEL: a RepNeXt config (mmpretrain / mmseg / mmdet; its backbone is used), a type dict such as
"dict(type='mmlk.RepNeXt', arch='m3')", or a timm name (repnext_m3). IMAGE: files or folders.
Each panel is the chunk's mean absolute activation, normalised per panel.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('model', help='RepNeXt config file, type dict or timm name')
    parser.add_argument('images', nargs='+', help='image files or folders (one grid row per image)')
    parser.add_argument('--checkpoint', help='weights (default: the random initialisation)')
    parser.add_argument('--stage', type=int, default=0, help='stage of the block (0-3)')
    parser.add_argument('--block', type=int, default=-1, help='block inside the stage (negative from the end)')
    parser.add_argument('--size', type=int, default=224, help='input side in pixels')
    parser.add_argument('--max-images', type=int, default=4, help='rows in the grid')
    parser.add_argument('--out', default='work_dirs/feature_maps.png', help='output PNG')
    return parser.parse_args(argv)


def main(argv=None) -> str:
    args = parse_args(argv)
    import torch

    from mmlk.analysis.erf import list_images, normalise_rgb, read_rgb
    from mmlk.analysis.feature_maps import branch_maps, save_grid
    from mmlk.analysis.models import build_from_spec

    paths = []
    for item in args.images:
        paths += list_images(item) if osp.isdir(item) else [item]
    missing = [p for p in paths if not osp.isfile(p)]
    if missing:
        raise SystemExit(f'error: image not found: {missing[0]}')
    paths = paths[:args.max_images]
    built = build_from_spec(args.model, args.checkpoint, backbone_only=args.model.endswith('.py'))
    images = [read_rgb(p, args.size) for p in paths]  # read once: the model input and the grid's first column
    batch = torch.stack([normalise_rgb(rgb, built.mean, built.std) for rgb in images])
    forward = built.model.forward_features if built.kind == 'timm' else built.backbone
    maps = branch_maps(built.backbone, batch, args.stage, args.block, forward=forward)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    save_grid(images, maps, args.out,
              title=f'stage {args.stage}, block {args.block}: ChunkConv branches')
    print(f'feature maps: {args.out}')
    return args.out


if __name__ == '__main__':
    main()
