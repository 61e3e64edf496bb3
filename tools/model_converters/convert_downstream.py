#!/usr/bin/env python
"""Convert an upstream RepLKNet / RepNeXt downstream checkpoint (mmseg 0.x / mmdet 2.x) for mmlk's configs.

    python tools/model_converters/convert_downstream.py SRC DST [--config CONFIG] [--overwrite]

SRC is a file, URL or checkpoints.yaml name (e.g. ``upernet_replknet-31b_in1k-pre_ade20k-512x512`` once the
file is in the cache). With ``--config`` (recommended) the weights are loaded strictly into that config's
model and the result is guaranteed to load there, e.g. afterwards

    python tools/test.py configs/replknet/upernet_replknet-31b_in1k-pre_64xb2-40k_ade20k-512x512.py DST

The output holds weights and ``meta.dataset_meta`` only; it is written atomically and never over SRC.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='upstream checkpoint: path, URL or checkpoints.yaml name')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument('--config', help='mmlk config whose model must load the result (strict check)')
    parser.add_argument('--overwrite', action='store_true', help='replace DST if it exists (never SRC)')
    args = parser.parse_args(argv)
    from mmlk.checkpoint import CheckpointError
    from mmlk.models.weights.convert import convert_downstream
    try:
        convert_downstream(args.src, args.dst, config=args.config, overwrite=args.overwrite)
    except CheckpointError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(args.dst)
    return 0


if __name__ == '__main__':
    sys.exit(main())
