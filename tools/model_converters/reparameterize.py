"""Convert a training-form RepLKNet / RepNeXt / UniRepLKNet checkpoint into its merged (deploy) form.

Structural re-parameterisation (RepLKNet, Ding et al., CVPR 2022; RepNeXt, arXiv:2406.16004) turns
parallel conv-BN branches into one conv after training. This tool loads a training-form checkpoint,
calls ``switch_to_deploy()`` and saves the merged weights, which then load into a model built with
``deploy=True`` (the ``configs/*/deploy/`` configs).

Usage::

    # Flat / wrapped backbone or classifier weights; family and variant inferred from the keys.
    python tools/model_converters/reparameterize.py train.pth deploy.pth [--fuse-bn]
    # Custom numbers the keys do not name: give the family and the arch.
    python tools/model_converters/reparameterize.py train.pth deploy.pth --model repnext --arch m3
    # Any mm model (segmentor, detector, classifier): build it from its config.
    python tools/model_converters/reparameterize.py train.pth deploy.pth --config CFG.py

Without ``--config``, keys under ``backbone.`` are merged and every other key (heads, necks) is
copied unchanged, so downstream mmseg/mmdet checkpoints convert too. The output is written to a
temporary file beside DST and renamed into place; the input is never overwritten. By default the
merged model is checked against the training-form one on a random input (eval mode).
"""
import argparse
import copy
import json
import os.path as osp
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

_REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

# Run-state entries that make no sense for merged weights (they describe the training-form params).
_DROP = ('optimizer', 'message_hub', 'param_schedulers', 'ema_state_dict', 'mmlk_rng_state')


def _family_names() -> List[str]:
    from mmlk.models import FAMILIES
    return [family.family for family in FAMILIES]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='training-form checkpoint')
    parser.add_argument('dst', help='where to write the merged checkpoint')
    parser.add_argument('--config', help='mm config building the whole model (optional)')
    parser.add_argument('--model', choices=['auto'] + _family_names(), default='auto',
                        help='backbone family when no --config is given (auto: the family whose keys '
                        'the file holds)')
    parser.add_argument('--arch', help="backbone arch (default: the published variant the keys describe), "
                        "e.g. '31B', 'm3', 't'; a JSON dict is accepted")
    parser.add_argument('--kwargs', default='{}',
                        help='extra backbone constructor kwargs as JSON (no --config)')
    parser.add_argument('--fuse-bn', action='store_true',
                        help='also fold every conv-BN pair into a biased conv (RepLKNet)')
    parser.add_argument('--force', action='store_true', help='overwrite an existing DST')
    parser.add_argument('--no-verify', action='store_true',
                        help='skip the eval-mode output comparison on a random input')
    parser.add_argument('--verify-size', type=int, default=64,
                        help='side of the random verification image')
    args = parser.parse_args(argv)
    same = osp.realpath(args.src) == osp.realpath(args.dst) or (
        osp.exists(args.dst) and osp.exists(args.src) and osp.samefile(args.src, args.dst))
    if same:
        parser.error('DST is the input file; write the merged checkpoint somewhere else')
    if osp.isdir(args.dst):
        parser.error(f'DST {args.dst} is a directory; give a file path such as {osp.join(args.dst, "deploy.pth")}')
    if osp.exists(args.dst) and not args.force:
        parser.error(f'{args.dst} exists; pass --force to overwrite it')
    if not osp.isfile(args.src):
        parser.error(f'{args.src} is not a file')
    return args


def _unwrap(ckpt: Any) -> Tuple[Dict[str, torch.Tensor], Optional[str]]:
    """``(state dict, the key it sits under or None)``: the file layer's container rules, keys as they are."""
    from mmlk.checkpoint import CheckpointError
    from mmlk.checkpoint.containers import unwrap_state_dict
    try:
        _, _, container = unwrap_state_dict(ckpt)
    except CheckpointError as e:
        raise ValueError(str(e)) from e
    return (ckpt, None) if container == 'flat' else (ckpt[container], container)


def _parse_arch(text: Optional[str]) -> Any:
    if text is None:
        return None
    text = text.strip()
    return json.loads(text) if text.startswith('{') else text


def switch_all(model: nn.Module, fuse_bn: bool) -> List[str]:
    """Switch every re-parameterisable part of ``model`` to deploy form; returns their names."""
    from mmlk.models.utils import reparameterize
    done = reparameterize(model, fuse_bn=fuse_bn or None)
    if not done:
        raise ValueError(f'{type(model).__name__} has no module with switch_to_deploy()')
    return done


def _outputs(model: nn.Module, x: torch.Tensor) -> List[torch.Tensor]:
    out = model(x)
    return list(out) if isinstance(out, (tuple, list)) else [out]


def verify(train_model: nn.Module, merged: nn.Module, size: int, in_channels: int = 3) -> float:
    """Max over outputs of max|a - b| / max|b| on a random input, both models in eval mode."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, in_channels, size, size, generator=gen)
    train_model.eval()
    merged.eval()
    with torch.no_grad():
        ref, got = _outputs(train_model, x), _outputs(merged, x)
    err = 0.0
    for a, b in zip(got, ref):
        err = max(err, ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item())
    return err


def _build_backbone(args: argparse.Namespace, sd: Dict[str, torch.Tensor]) -> nn.Module:
    import mmlk  # noqa: F401  (registers the backbones)
    from mmlk.models.weights.keys import check_state_dict_fits, codec_of, families, shapes_of
    kwargs = json.loads(args.kwargs)
    by_name = {fam.family: fam for fam in families()}
    if args.model == 'auto':
        fam = codec_of(list(sd))
        if fam is None:
            raise ValueError(f'cannot tell the backbone family from the keys; pass --model ({", ".join(by_name)}) '
                             '--arch ... (or --config)')
    else:
        fam = by_name[args.model]
    info = fam.describe_shapes(shapes_of(sd))
    if info['form'] not in (None, 'train'):
        raise ValueError(f'the checkpoint is already in {info["form"]} form; nothing to merge')
    arch = _parse_arch(args.arch)
    built = fam.kwargs_for_state_dict(info)
    if arch is not None:
        built['arch'] = arch
    elif built.get('arch') is None:
        raise ValueError(f'the keys do not name a {fam.display_name} variant; pass --arch')
    model = fam(**{**built, **kwargs})
    check_state_dict_fits(model, sd)
    model.load_state_dict(sd, strict=True)
    return model


def _convert_backbone(args: argparse.Namespace,
                      sd: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], float]:
    if any(k.startswith('backbone.') for k in sd):
        prefix = 'backbone.'
    elif all(k.startswith('module.') for k in sd):
        prefix = 'module.'
    else:
        prefix = ''
    sub = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    rest = {k: v for k, v in sd.items() if not k.startswith(prefix)}
    model = _build_backbone(args, sub)
    reference = copy.deepcopy(model) if not args.no_verify else None
    model.eval()
    switch_all(model, args.fuse_bn)
    err = float('nan')
    if reference is not None:
        in_ch = model.build_kwargs.get('in_channels', 3)
        err = verify(reference, model, args.verify_size, in_ch)
    merged = {prefix + k: v for k, v in model.state_dict().items()}
    merged.update(rest)
    return merged, err


def _convert_with_config(args: argparse.Namespace,
                         sd: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], float]:
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope

    import mmlk  # noqa: F401
    cfg = Config.fromfile(args.config)
    scope = cfg.get('default_scope', 'mmlk')
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(cfg.model)
    model.load_state_dict(sd, strict=True)
    reference = copy.deepcopy(model) if not args.no_verify else None
    model.eval()
    switch_all(model, args.fuse_bn)
    err = float('nan')
    if reference is not None and hasattr(model, 'backbone'):
        err = verify(reference.backbone, model.backbone, args.verify_size)
    return model.state_dict(), err


def atomic_save(obj: Any, path: str) -> None:
    """torch.save through a temporary beside ``path`` that a rerun removes if this process is killed."""
    from mmlk.checkpoint.atomic import atomic_save as _save
    _save(obj, path, overwrite=True)  # parse_args already refused an existing DST without --force


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from mmlk.checkpoint import CheckpointError
    from mmlk.checkpoint.reader import read_checkpoint
    # The restricted reader: weights_only=True with the zip CRCs checked first; never runs code.
    try:
        ckpt, _ = read_checkpoint(args.src)
    except CheckpointError as e:
        raise ValueError(str(e)) from e
    sd, wrapper = _unwrap(ckpt)
    if args.config:
        merged, err = _convert_with_config(args, sd)
    else:
        merged, err = _convert_backbone(args, sd)
    if not args.no_verify and not err <= 1e-4:
        raise RuntimeError(f'merged model differs from the training-form one (relative error '
                           f'{err:.3g}); nothing written')
    merged = {k: v.detach().cpu().contiguous() for k, v in merged.items()}
    if wrapper is None:
        out: Any = merged
    else:
        out = {k: v for k, v in ckpt.items() if k not in _DROP and k != wrapper}
        out[wrapper] = merged
    atomic_save(out, args.dst)
    print(f'{args.src}: {len(sd)} entries -> {args.dst}: {len(merged)} entries'
          + ('' if args.no_verify else f' (max relative output difference {err:.2e})'))
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except (ValueError, RuntimeError) as exc:  # user errors: the message says what to do
        print(f'reparameterize: error: {exc}', file=sys.stderr)
        sys.exit(1)
