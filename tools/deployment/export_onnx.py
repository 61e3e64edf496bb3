#!/usr/bin/env python
"""Merge a trained model, export it to ONNX and check the graph against PyTorch.

    python tools/deployment/export_onnx.py CONFIG CHECKPOINT [--out model.onnx] [--shape H [W]]
                                           [--batch-size 1] [--static-batch] [--no-merge] [--tolerance 1e-4]

1. builds CONFIG's model (mmpretrain classifier, mmseg segmentor, mmdet detector up to its raw head
   outputs) and loads CHECKPOINT (use "none" for the random initialisation);
2. merges every re-parameterisable block (``switch_to_deploy``);
3. exports the network in tensor mode (classifier: logits, segmentor: per-class logits at 1/4 or the
   decode head's resolution; no post-processing) with torch's ONNX exporter;
4. runs the .onnx on a random input of the config's real size (--shape overrides) with onnxruntime,
   or onnx's reference evaluator when onnxruntime is missing, and compares every output with
   PyTorch's (max |diff| / max |PyTorch|); exits non-zero above --tolerance. The batch axis is dynamic
   unless --static-batch: the graph is checked at --batch-size and at --batch-size + 2.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file (or type dict / timm name)')
    parser.add_argument('checkpoint', help='checkpoint file, or "none" for the random initialisation')
    parser.add_argument('--out', help='output .onnx (default: work_dirs/onnx/<config name>.onnx)')
    parser.add_argument('--shape', type=int, nargs='+', help='input H [W] (default: the config\'s crop size, else 224)')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--no-merge', action='store_true', help='export the training form as is')
    parser.add_argument('--static-batch', action='store_true',
                        help='fix the batch axis to --batch-size (default: a dynamic batch axis, checked at '
                             '--batch-size and --batch-size + 2)')
    parser.add_argument('--tolerance', type=float, default=1e-4, help='max relative error accepted')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config entries')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    from mmlk.analysis.export import export_and_check
    from mmlk.analysis.models import build_from_spec, default_input_size, switch_to_deploy, tensor_model

    checkpoint = None if args.checkpoint.lower() == 'none' else args.checkpoint
    built = build_from_spec(args.config, checkpoint, cfg_options=args.cfg_options)
    merged = 0 if args.no_merge else switch_to_deploy(built.model)
    h, w = (args.shape * 2)[:2] if args.shape else default_input_size(built)
    name = osp.splitext(osp.basename(args.config))[0] if args.config.endswith('.py') else 'model'
    out = args.out or osp.join('work_dirs', 'onnx', name + '.onnx')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    print(f'{args.config}: {"merged" if merged else "not merged"}, exporting at {args.batch_size}x3x{h}x{w}')
    try:
        result = export_and_check(tensor_model(built), (args.batch_size, 3, h, w), out, args.tolerance,
                                  dynamic_batch=not args.static_batch)
    except RuntimeError as exc:
        raise SystemExit(f'error: {exc}')
    # The dynamo exporter keeps large weights in a side file next to the graph.
    size = sum(osp.getsize(p) for p in (out, out + '.data') if osp.isfile(p))
    print(f'exported with the {result["exporter"]} exporter in {result["export_s"]:.1f} s: {out} '
          f'({size / 1e6:.1f} MB{", weights in " + osp.basename(out) + ".data" if osp.isfile(out + ".data") else ""})')
    if result['static_batch_reason']:
        print(f'note: exported with a fixed batch of {args.batch_size}: {result["static_batch_reason"]}')
    for i, row in enumerate(result['outputs']):
        print(f'  output {i} {row["shape"]}: max |diff| {row["max_abs"]:.2e}, relative {row["rel"]:.2e}')
    print(f'check: {result["runtime"]} vs PyTorch at batch {", ".join(map(str, result["checked_batches"]))}, '
          f'max relative error {result["worst_rel"]:.2e} '
          f'<= {args.tolerance:.0e}: OK ({result["run_s"]:.1f} s)')
    return result


if __name__ == '__main__':
    main()
