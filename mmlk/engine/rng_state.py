"""Random-number-generator state that travels with mmengine checkpoints, so resuming reproduces a run.

mmengine 0.10.7 re-seeds a resumed run but does not restore the generators' states: dropout and
drop-path then draw other masks than the uninterrupted run would have, and the resumed run ends
elsewhere. :class:`RNGStateHook` stores the states of torch (CPU and the rank's CUDA device), numpy and
Python's ``random`` of every rank in the checkpoint and restores them when the run resumes.

The states are stored as tensors, ints, floats and strings only, so checkpoints stay loadable with
``torch.load(weights_only=True)``.
"""
import logging
import random
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log

from ..registry import HOOKS

#: Top-level checkpoint key holding the list of per-rank states.
CHECKPOINT_KEY = 'mmlk_rng_state'


def get_rng_state() -> Dict[str, Any]:
    """The current states of torch (CPU, CUDA), numpy and ``random`` as plain data."""
    np_state = np.random.get_state()
    version, internal, gauss = random.getstate()
    return dict(
        torch=torch.get_rng_state(),
        # Only the current device: a rank uses one GPU, and touching the others would create CUDA contexts
        # (memory) on every GPU of the node for every rank.
        cuda=[torch.cuda.get_rng_state()] if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        numpy=dict(kind=str(np_state[0]), key=torch.from_numpy(np_state[1].astype(np.int64)),
                   pos=int(np_state[2]), has_gauss=int(np_state[3]), cached_gaussian=float(np_state[4])),
        python=dict(version=int(version), internal=torch.tensor(internal, dtype=torch.int64),
                    gauss=None if gauss is None else float(gauss)))


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore states produced by :func:`get_rng_state`."""
    torch.set_rng_state(state['torch'].cpu())
    cuda = state.get('cuda') or []
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda[0].cpu())
    elif cuda:
        print_log('mmlk: the checkpoint holds a CUDA generator state but this machine has no CUDA; only the CPU '
                  'generators are restored', logger='current', level=logging.WARNING)
    n = state['numpy']
    np.random.set_state((n['kind'], n['key'].numpy().astype(np.uint32), n['pos'], n['has_gauss'],
                         n['cached_gaussian']))
    p = state['python']
    random.setstate((p['version'], tuple(int(v) for v in p['internal'].tolist()), p['gauss']))


class _ForkedSkipIterator:
    """Wraps a train loop's data iterator so its first ``skip`` ``next()`` calls leave the global RNGs alone.

    mmengine's IterBasedTrainLoop replays the batches already trained on when it resumes (to advance the
    sampler); with ``num_workers=0`` the replay runs random transforms in this process. The restored
    states must be those of the next real batch, so the replay runs on a throw-away copy of them.
    """

    def __init__(self, iterator: Any, skip: int) -> None:
        self._iterator = iterator
        self._skip = skip

    def __iter__(self) -> '_ForkedSkipIterator':
        return self

    def __next__(self) -> Any:
        if self._skip <= 0:
            return next(self._iterator)
        self._skip -= 1
        saved = get_rng_state()
        try:
            return next(self._iterator)
        finally:
            set_rng_state(saved)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._iterator, name)


def _checkpoint_due(runner: Any, by_epoch: bool) -> bool:
    """Whether a CheckpointHook of ``runner`` saves at the end of the current iteration / epoch."""
    from mmengine.hooks import CheckpointHook
    try:
        for hook in runner.hooks:
            if not isinstance(hook, CheckpointHook) or bool(hook.by_epoch) != by_epoch:
                continue
            if by_epoch:
                due = hook.every_n_epochs(runner, hook.interval, hook.save_begin) or (
                    hook.save_last and hook.is_last_train_epoch(runner))
            else:
                due = hook.every_n_train_iters(runner, hook.interval, hook.save_begin) or (
                    hook.save_last and hook.is_last_train_iter(runner))
            if due:
                return True
        return False
    except AttributeError:  # another mmengine version: gather every time rather than miss a save
        return True


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save every rank's RNG states with each checkpoint; restore them on resume.

    mmlk's ``tools/train.py`` adds this hook to every config (``custom_hooks``). With
    ``randomness=dict(seed=..., deterministic=True)`` a run resumed from iteration ``k`` then ends with
    the same weights as the run that never stopped, dropout and drop-path included.

    Only rank 0 runs ``Runner.save_checkpoint``, so in a distributed run the states of all ranks are
    gathered (one ``all_gather_object`` of a few kB) at the end of each iteration / epoch after which a
    ``CheckpointHook`` saves; the priority ``LOW`` runs this before the ``CheckpointHook`` (``VERY_LOW``).
    """

    priority = 'LOW'

    def __init__(self) -> None:
        self._pending: Optional[Dict[str, Any]] = None
        self._gathered: Optional[Tuple[Tuple[int, int], List[Dict[str, Any]]]] = None

    def _gather(self, runner: Any, by_epoch: bool) -> None:
        if get_world_size() > 1 and _checkpoint_due(runner, by_epoch):
            self._gathered = ((runner.iter, runner.epoch), all_gather_object(get_rng_state()))

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        self._gather(runner, by_epoch=False)

    def after_train_epoch(self, runner: Any) -> None:
        self._gather(runner, by_epoch=True)

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        if get_world_size() == 1:
            checkpoint[CHECKPOINT_KEY] = [get_rng_state()]
        elif self._gathered is not None and self._gathered[0] == (runner.iter, runner.epoch):
            checkpoint[CHECKPOINT_KEY] = self._gathered[1]
        else:
            # A save no CheckpointHook announced (e.g. a best checkpoint after validation): only this rank's
            # states are at hand, and a resume on several ranks will say it cannot restore them.
            checkpoint[CHECKPOINT_KEY] = [get_rng_state()]

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        states = checkpoint.get(CHECKPOINT_KEY)
        if not states:
            return
        rank, world = get_rank(), get_world_size()
        if len(states) != world:
            print_log(f'mmlk: the checkpoint holds RNG states of {len(states)} ranks, this run has {world}; '
                      'they are not restored, so the resumed run will not repeat the original exactly',
                      logger='current', level=logging.WARNING)
            return
        # Restored in before_train: mmengine re-seeds after loading the checkpoint.
        self._pending = states[rank]

    def before_train(self, runner: Any) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        set_rng_state(state)
        loop = runner.train_loop
        skip = int(getattr(loop, '_iter', 0) or 0)
        if skip and hasattr(loop, 'dataloader_iterator'):
            loop.dataloader_iterator = _ForkedSkipIterator(loop.dataloader_iterator, skip)
