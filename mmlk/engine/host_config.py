"""One set of train/test entry points for mmpretrain, mmsegmentation and mmdetection configs.

The three host libraries ship their own ``tools/train.py`` / ``tools/test.py`` that differ in small
ways (``--resume`` semantics, dataloader defaults, how an evaluator or a visualiser is switched on).
The helpers here read a config's ``default_scope`` and apply that library's conventions, so mmlk's
``tools/train.py`` and ``tools/test.py`` serve every config, ours and the users'.
"""
import copy
import glob
import logging
import os
import os.path as osp
from typing import Dict, Iterable, List, Optional, Sequence

import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

HOST_SCOPES = ('mmseg', 'mmdet', 'mmpretrain')

# `--eval` names accepted per host library, as the upstream READMEs use them.
SEG_METRICS = ('mIoU', 'mDice', 'mFscore')
DET_METRICS = ('bbox', 'segm', 'proposal')
CLS_METRICS = ('accuracy', 'precision', 'recall', 'f1_score', 'support')


def load_config(path: str, cfg_options: Optional[Dict] = None) -> Config:
    """Load a config file (``custom_imports`` are honoured) and merge ``--cfg-options`` into it."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def prepare_config(path: str, cfg_options: Optional[Dict], launcher: str,
                   work_dir: Optional[str]) -> Config:
    """What tools/train.py and tools/test.py both do before their own options.

    Loads the config, sets the launcher and work dir (default ``./work_dirs/<config name>``), imports
    the host library's registries and applies its dataloader defaults and the CPU adaptations.
    """
    cfg = load_config(path, cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    init_host_scope(cfg)
    adapt_to_cpu(cfg)
    apply_dataloader_defaults(cfg)
    return cfg


def host_scope(cfg: Config) -> str:
    """The host library a config belongs to (its ``default_scope``), or ``'mmengine'``."""
    return cfg.get('default_scope', None) or 'mmengine'


def _walk(node, visit) -> None:
    """Call ``visit(dict_node)`` on every dict inside a nested config structure."""
    if isinstance(node, dict):
        visit(node)
        for value in node.values():
            _walk(value, visit)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _walk(value, visit)


def replace_syncbn_without_cuda(cfg: Config, logger_name: str = 'current') -> int:
    """Turn every ``SyncBN`` norm into ``BN`` when CUDA is not available; returns how many.

    SyncBN only runs on CUDA tensors, and the published configs use it everywhere. Rather than make
    CPU users pass a dozen ``--cfg-options``, the tools switch it (and say so in the log). Numerics
    are the same as BN on one process.
    """
    if torch.cuda.is_available():
        return 0
    count = 0

    def visit(node: dict) -> None:
        nonlocal count
        if node.get('type') in ('SyncBN', 'MMSyncBN', 'TorchSyncBN'):
            node['type'] = 'BN'
            count += 1

    _walk(cfg.get('model', {}), visit)
    if count:
        print_log(f'mmlk: no CUDA device, replaced {count} SyncBN norm config(s) with BN',
                  logger=logger_name, level=logging.WARNING)
    return count


def adapt_to_cpu(cfg: Config) -> None:
    """Make a GPU config run on a CPU-only machine: SyncBN -> BN and NCCL -> gloo (both logged)."""
    if torch.cuda.is_available():
        return
    replace_syncbn_without_cuda(cfg)
    dist_cfg = cfg.get('env_cfg', {}).get('dist_cfg', None)
    if dist_cfg is not None and dist_cfg.get('backend') == 'nccl':
        dist_cfg['backend'] = 'gloo'
        print_log('mmlk: no CUDA device, distributed backend nccl -> gloo', logger='current',
                  level=logging.WARNING)


def init_cpu_distributed(cfg: Config, launcher: str) -> None:
    """Start a gloo process group for ``--launcher pytorch`` on a machine without CUDA.

    mmengine's pytorch launcher calls ``torch.cuda.set_device`` unconditionally and its DDP wrapper
    passes ``device_ids=[local_rank]``, both of which fail for CPU processes. Initialising the group
    here makes the Runner skip its own initialisation, and ``device_ids=None`` is what DDP expects
    for CPU modules.
    """
    if launcher != 'pytorch' or torch.cuda.is_available():
        return
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    wrapper = dict(cfg.get('model_wrapper_cfg', None) or dict(type='MMDistributedDataParallel'))
    wrapper.update(device_ids=None, broadcast_buffers=False)
    wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper


def apply_dataloader_defaults(cfg: Config) -> None:
    """mmpretrain's tools default every dataloader's collate_fn to ``default_collate``."""
    if host_scope(cfg) != 'mmpretrain':
        return
    for field in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(field)
        if loader and 'collate_fn' not in loader:
            loader['collate_fn'] = dict(type='default_collate')


def apply_resume(cfg: Config, resume: Optional[str]) -> None:
    """``--resume`` alone resumes from the latest checkpoint in the work dir; ``--resume PATH`` from PATH."""
    if resume is None:
        return
    cfg.resume = True
    if resume == 'auto':
        work_dir = cfg.get('work_dir', None)
        cfg.load_from = find_resume_checkpoint(work_dir) if work_dir else None
    else:
        if not osp.isfile(resume):
            raise FileNotFoundError(f'--resume checkpoint not found: {resume}')
        cfg.load_from = resume


def _usable_checkpoint(path: str) -> Optional[str]:
    """None if ``path`` passes mmlk's structure check (CRCs of a zip, sniffing), else why not."""
    from mmlk.checkpoint.errors import CheckpointError
    from mmlk.checkpoint.reader import check_zip, sniff_container
    try:
        if sniff_container(path) == 'zip':
            check_zip(path)
    except CheckpointError as e:
        return str(e)
    return None


def find_resume_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` continues from: the one ``<work_dir>/last_checkpoint`` names, or else the
    newest intact ``*.pth`` in the work dir (with a warning), or None when there is none.

    mmengine reads ``last_checkpoint`` as is: an empty or stale file (a run killed at the wrong moment, a
    work dir copied from elsewhere) makes it fail with ``FileNotFoundError: ' can not be found.'``.
    """
    last = osp.join(work_dir, 'last_checkpoint')
    problem = None
    if osp.isfile(last):
        with open(last, encoding='utf-8', errors='replace') as f:
            named = f.read().strip()
        if not named:
            problem = f'{last} is empty'
        else:
            # A work dir moved elsewhere still holds the file next to last_checkpoint.
            for cand in (named, osp.join(work_dir, osp.basename(named))):
                if osp.isfile(cand):
                    why = _usable_checkpoint(cand)
                    if why is None:
                        return cand
                    problem = f'{cand}, named by {last}, is unusable ({why})'
                    break
            else:
                problem = f'{last} names {named!r}, which does not exist'
    elif not osp.isdir(work_dir):
        return None
    candidates = sorted((p for p in glob.glob(osp.join(work_dir, '*.pth')) if osp.isfile(p)),
                        key=lambda p: (osp.getmtime(p), p), reverse=True)
    skipped = []
    for cand in candidates:
        why = _usable_checkpoint(cand)
        if why is None:
            reason = problem or f'{work_dir} has no last_checkpoint'
            extra = f' (skipped damaged {", ".join(map(osp.basename, skipped))})' if skipped else ''
            print_log(f'mmlk: {reason}; resuming from the newest checkpoint in the work dir, {cand}{extra}',
                      logger='current', level=logging.WARNING)
            return cand
        skipped.append(cand)
    if problem:
        print_log(f'mmlk: {problem} and {work_dir} holds no intact checkpoint; training starts from scratch',
                  logger='current', level=logging.WARNING)
    return None


def apply_rng_state_hook(cfg: Config) -> None:
    """Add :class:`mmlk.engine.RNGStateHook` to ``custom_hooks`` (once), so checkpoints carry RNG states."""
    hooks = list(cfg.get('custom_hooks', None) or [])
    if not any(str(h.get('type', '')).split('.')[-1] == 'RNGStateHook' for h in hooks if isinstance(h, dict)):
        hooks.append(dict(type='mmlk.RNGStateHook'))
    cfg.custom_hooks = hooks


def global_batch_warning(cfg: Config, world_size: int) -> Optional[str]:
    """A warning when the run's global batch differs from the one ``auto_scale_lr`` names (else None).

    mmlk's configs, like the host libraries', set ``auto_scale_lr=dict(enable=False, base_batch_size=B)``
    with ``B`` the global batch the learning rate was tuned for, and leave scaling to ``--auto-scale-lr``.
    A run on another number of processes would otherwise silently train with an untuned learning rate.
    """
    scale = cfg.get('auto_scale_lr', None)
    loader = cfg.get('train_dataloader', None)
    if not scale or 'base_batch_size' not in scale or not loader or loader.get('batch_size') is None:
        return None
    per_process = int(loader['batch_size'])
    actual, base = per_process * world_size, int(scale['base_batch_size'])
    if actual == base:
        return None
    what = (f'the global batch is {actual} ({world_size} process(es) x {per_process}), but this config\'s '
            f'learning rate is tuned for {base} (auto_scale_lr.base_batch_size)')
    if scale.get('enable', False):
        return f'{what}; auto_scale_lr is enabled, so the learning rate is scaled by {actual / base:.4g}.'
    return (f'{what}; the learning rate is NOT scaled. To scale it linearly (x{actual / base:.4g}), rerun with '
            '--auto-scale-lr (mmlk\'s and the host library\'s tools/train.py) or '
            '--cfg-options auto_scale_lr.enable=True.')


def launcher_world_size(launcher: str) -> int:
    """Processes of this run as its launcher sets them up (read before the process group exists)."""
    if launcher == 'none':
        return 1
    for var in ('WORLD_SIZE', 'SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE'):
        if os.environ.get(var, '').isdigit():
            return int(os.environ[var])
    return 1


def apply_amp(cfg: Config) -> None:
    """Switch the optimizer wrapper to mixed precision (fp16 with dynamic loss scale on CUDA).

    mmengine's ``AmpOptimWrapper`` is CUDA-only; on a CPU machine mmlk's ``BF16AutocastOptimWrapper``
    runs the forward under bfloat16 autocast instead (no loss scaling is needed for bf16).
    """
    wrapper = cfg.optim_wrapper
    if wrapper.get('type', 'OptimWrapper') not in ('OptimWrapper', 'AmpOptimWrapper',
                                                   'mmlk.BF16AutocastOptimWrapper'):
        print_log(f'mmlk: --amp ignored: optim_wrapper type {wrapper.type} is custom', logger='current',
                  level=logging.WARNING)
        return
    if torch.cuda.is_available():
        wrapper.type = 'AmpOptimWrapper'
        wrapper.setdefault('loss_scale', 'dynamic')
    else:
        wrapper.type = 'mmlk.BF16AutocastOptimWrapper'
        print_log('mmlk: no CUDA device, --amp trains with bfloat16 autocast on the CPU', logger='current')


def _dataset_num_classes(cfg: Config) -> Optional[int]:
    head = cfg.get('model', {}).get('head', None)
    return head.get('num_classes', None) if isinstance(head, dict) else None


def build_eval_metrics(cfg: Config, metrics: Sequence[str]) -> List[Dict]:
    """Map ``--eval`` names (upstream 0.x style) onto this host library's evaluator configs."""
    scope = host_scope(cfg)
    metrics = list(metrics)
    current = copy.deepcopy(cfg.get('test_evaluator', None))
    current_list = current if isinstance(current, list) else [current] if current else []

    def unknown(valid: Iterable[str]) -> ValueError:
        return ValueError(f'--eval {" ".join(metrics)}: not a metric of a {scope} config; '
                          f'valid names are {", ".join(valid)}')

    if scope == 'mmseg':
        if not set(metrics) <= set(SEG_METRICS):
            raise unknown(SEG_METRICS)
        base = next((m for m in current_list if m.get('type') == 'IoUMetric'), dict(type='IoUMetric'))
        base = dict(base)
        base['iou_metrics'] = metrics
        return [base]
    if scope == 'mmdet':
        if not set(metrics) <= set(DET_METRICS):
            raise unknown(DET_METRICS)
        base = next((m for m in current_list if m.get('type') == 'CocoMetric'), None)
        if base is None:
            dataset = cfg.test_dataloader.dataset
            base = dict(type='CocoMetric',
                        ann_file=osp.join(dataset.get('data_root', ''), dataset.get('ann_file', '')))
        base = dict(base)
        base['metric'] = metrics
        return [base]
    if scope == 'mmpretrain':
        if not set(metrics) <= set(CLS_METRICS):
            raise unknown(CLS_METRICS)
        evaluators = []
        if 'accuracy' in metrics:
            num_classes = _dataset_num_classes(cfg)
            topk = (1, 5) if num_classes is None or num_classes >= 5 else (1,)
            evaluators.append(dict(type='Accuracy', topk=topk))
        items = [m for m in metrics if m != 'accuracy']
        if items:
            evaluators.append(dict(type='SingleLabelMetric', items=items))
        return evaluators
    raise ValueError(f'--eval needs a config whose default_scope is one of {HOST_SCOPES}, '
                     f'got {scope!r}; set test_evaluator in the config instead')


def apply_eval(cfg: Config, metrics: Optional[Sequence[str]]) -> None:
    if metrics:
        cfg.test_evaluator = build_eval_metrics(cfg, metrics)


def apply_show_dir(cfg: Config, show_dir: Optional[str], show: bool = False) -> None:
    """Switch on the host library's visualisation hook and point it at ``show_dir``."""
    if not show_dir and not show:
        return
    scope = host_scope(cfg)
    hooks = cfg.default_hooks
    if 'visualization' not in hooks:
        raise ValueError('--show-dir needs a `visualization` entry in default_hooks')
    vis = hooks.visualization
    if scope == 'mmpretrain':
        vis.enable = True
        vis.out_dir = show_dir
        vis.show = show
    elif scope == 'mmdet':
        vis.draw = True
        vis.show = show
        if show_dir:
            vis.test_out_dir = show_dir
    else:  # mmseg
        vis.draw = True
        vis.interval = 1
        vis.show = show
        if show_dir:
            cfg.visualizer = ConfigDict(cfg.get('visualizer', {}))
            cfg.visualizer.save_dir = show_dir


def init_host_scope(cfg: Config) -> None:
    """Import the host library's modules so its registries are populated before the Runner builds."""
    from mmengine.registry import init_default_scope
    scope = host_scope(cfg)
    if scope in HOST_SCOPES:
        init_default_scope(scope)
