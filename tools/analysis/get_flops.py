#!/usr/bin/env python
"""FLOPs and parameters of any config (segmentation, detection, classification), a type dict or a timm model.

    python tools/analysis/get_flops.py MODEL [--shape H [W]] [--form train|merged|both] [--device cpu|cuda]
                                       [--by-module] [--cfg-options k=v ...]

One FLOP = one multiply-add, as in the RepLKNet and RepNeXt papers (and mmcv's counter behind their
numbers). The training form is counted as it runs (large kernel + small kernel + BNs), the merged form
after ``switch_to_deploy()``. Segmentors and classifiers are counted without post-processing (the
network's logits), detectors up to their raw head outputs (no NMS). Unlike mmseg 1.2.2's own
get_flops.py this works for every config (it fails with '"input_shape" and "inputs" cannot be both set').

Example (UperNet RepLKNet-31B, ADE20K, 2048x512 as in the paper's table: 1170G published):
    python tools/analysis/get_flops.py configs/replknet/upernet_replknet-31b_in1k-pre_64xb2-40k_ade20k-512x512.py \
        --shape 512 2048
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('model', help='config file, type dict or timm model name')
    parser.add_argument('--shape', type=int, nargs='+', default=None,
                        help='input H [W] (default: the config\'s crop size, else 224)')
    parser.add_argument('--form', choices=['train', 'merged', 'both'], default='both',
                        help='count the training form, the merged (switch_to_deploy) form, or both')
    parser.add_argument('--device', default='cpu', help='where the traced forward runs (cpu or cuda)')
    parser.add_argument('--by-module', action='store_true', help='also print FLOPs per top-level module')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config entries')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    from mmlk.analysis.flops import count_model, fmt
    from mmlk.analysis.models import build_from_spec, default_input_size, switch_to_deploy, tensor_model

    built = build_from_spec(args.model, cfg_options=args.cfg_options)
    if args.shape:
        if len(args.shape) > 2:
            raise SystemExit('error: --shape takes H or H W')
        h, w = (args.shape * 2)[:2]
    else:
        h, w = default_input_size(built)
    forms = ['train', 'merged'] if args.form == 'both' else [args.form]
    results = {}
    print(f'{args.model}\ninput 1x3x{h}x{w}; FLOPs = multiply-adds')
    for form in forms:
        if form == 'merged':
            merged = switch_to_deploy(built.model)
            if not merged:
                print('merged: the model has nothing to merge (no switch_to_deploy); same as train')
        res = count_model(tensor_model(built), (1, 3, h, w), args.device)
        results[form] = res
        print(f'{form:>6}: FLOPs {fmt(res["flops"])}  params {fmt(res["params"], "M")}')
        if args.by_module:
            for name, flops in sorted(res['by_module'].items()):
                print(f'        {name:<40} {fmt(flops)}')
    unsupported = results[forms[-1]]['unsupported']
    if unsupported:
        # Element-wise ops (adds, activations) are not counted, by the convention of the papers' tables.
        names = ', '.join(f'{k} x{v}' for k, v in sorted(unsupported.items())[:8])
        print(f'not counted (no FLOP rule, mostly element-wise): {names}{" ..." if len(unsupported) > 8 else ""}')
    return results


if __name__ == '__main__':
    main()
