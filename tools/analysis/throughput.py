#!/usr/bin/env python
"""Inference latency / throughput of any config: training form vs merged, NCHW vs channels_last, fp32 vs bf16.

    python tools/analysis/throughput.py MODEL [--batch-size 1] [--shape H [W]] [--forms train merged]
                                        [--layouts nchw channels_last] [--dtypes fp32 bf16]
                                        [--warmup 2] [--repeats 5] [--threads N] [--device cpu|cuda]

MODEL: a config file (mmpretrain / mmseg / mmdet), a type dict or a timm model name, as for get_flops.py.
Every variant runs the same random batch (``torch.inference_mode``; bf16 through autocast); medians of
``--repeats`` timed calls after ``--warmup`` untimed ones, variants interleaved. On CUDA the device is
synchronised around each call. The Markdown table can go into a README as is (``--json`` for machines).
"""
import argparse
import json
import os
import os.path as osp
import platform
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
# Spinning OpenMP threads made multi-threaded CPU timings 10-50x slower whenever another process shared
# the cores (measured by tools/analysis/benchmark_dwconv.py); passive waiting costs nothing when idle.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('model', help='config file, type dict or timm model name')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--shape', type=int, nargs='+', help='input H [W] (default: the config\'s crop size, else 224)')
    parser.add_argument('--forms', nargs='+', choices=['train', 'merged'], default=['train', 'merged'])
    parser.add_argument('--layouts', nargs='+', choices=['nchw', 'channels_last'], default=['nchw', 'channels_last'])
    parser.add_argument('--dtypes', nargs='+', choices=['fp32', 'bf16'], default=['fp32', 'bf16'])
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=None, help='torch intra-op threads on CPU')
    parser.add_argument('--device', default=None, help='cpu or cuda (default: cuda when available)')
    parser.add_argument('--checkpoint', help='optional weights (timing does not depend on them)')
    parser.add_argument('--json', help='also write the results to this JSON file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config entries')
    return parser.parse_args(argv)


def main(argv=None) -> list:
    args = parse_args(argv)
    import torch

    from mmlk.analysis.models import build_from_spec, default_input_size, switch_to_deploy, tensor_model
    from mmlk.analysis.throughput import benchmark, format_table

    if args.batch_size < 1 or args.repeats < 1 or args.warmup < 0:
        raise SystemExit('error: --batch-size and --repeats must be >= 1, --warmup >= 0')
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))

    def make(form: str):
        # A fresh model per form: switch_to_deploy works in place.
        built = build_from_spec(args.model, args.checkpoint, cfg_options=args.cfg_options)
        if form == 'merged' and not switch_to_deploy(built.model):
            print('note: the model has no switch_to_deploy(); "merged" times the same network')
        return tensor_model(built)

    probe = build_from_spec(args.model, cfg_options=args.cfg_options)
    if args.shape:
        h, w = (args.shape * 2)[:2]
    else:
        h, w = default_input_size(probe)
    del probe
    results = benchmark(make, (args.batch_size, 3, h, w), device, args.forms, args.layouts, args.dtypes,
                        args.warmup, args.repeats)
    where = (torch.cuda.get_device_name(device) if device.type == 'cuda'
             else f'{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads')
    print(f'# {args.model}\n# input {args.batch_size}x3x{h}x{w}, {device.type} ({where}), torch {torch.__version__}, '
          f'median of {args.repeats} after {args.warmup} warm-up')
    print(format_table(results))
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(dict(model=args.model, input=[args.batch_size, 3, h, w], device=str(device),
                           results=results), f, indent=1)
    return results


if __name__ == '__main__':
    main()
