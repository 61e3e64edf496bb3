#!/usr/bin/env python
"""Convert an official RepLKNet / RepNeXt classification checkpoint into an mmpretrain classifier checkpoint.

    python tools/model_converters/convert_cls_to_mmpretrain.py SRC DST [--config CONFIG | --layout mmlk|mmpretrain]

``--config configs/replknet/replknet-31b_32xb64_in1k-224.py`` loads SRC strictly into that config's
``ImageClassifier`` (merging on the fly for configs under ``deploy/``) and writes its state dict, so

    python tools/test.py configs/replknet/replknet-31b_32xb64_in1k-224.py DST

evaluates it. Without a config, ``--layout mmlk`` (default) writes the layout of mmlk's classification
configs and ``--layout mmpretrain`` that of mmpretrain's own RepLKNet (``backbone.stages.3.norm``,
``head.fc``). Written atomically, never over SRC.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='official checkpoint: path, URL or checkpoints.yaml name')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument('--config', help='mmlk classification config whose model must load the result')
    parser.add_argument('--layout', choices=['mmlk', 'mmpretrain'], default='mmlk')
    parser.add_argument('--overwrite', action='store_true', help='replace DST if it exists (never SRC)')
    args = parser.parse_args(argv)
    from mmlk.checkpoint import CheckpointError
    from mmlk.models.weights.convert import convert_classification
    try:
        convert_classification(args.src, args.dst, config=args.config, layout=args.layout,
                               overwrite=args.overwrite)
    except CheckpointError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(args.dst)
    return 0


if __name__ == '__main__':
    sys.exit(main())
