"""Resuming (issue #11): a resumed run repeats the uninterrupted one bitwise, and ``--resume`` survives an
empty ``last_checkpoint``. A toy model with dropout and a dataset with numpy / ``random`` augmentation keep
it fast; the mechanism is the same for the shipped configs (tools/train.py adds the hook to every config).
"""
import os
import os.path as osp
import random

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import BaseModel
from torch.utils.data import Dataset

import mmlk  # noqa: F401  (registers mmlk.RNGStateHook)
from mmlk.engine.host_config import apply_resume, apply_rng_state_hook, find_resume_checkpoint


class _Augmented(Dataset):
    """Samples drawn through numpy's and Python's global generators, as mmcv's random transforms do."""

    def __len__(self) -> int:
        return 32

    def __getitem__(self, i: int) -> dict:
        x = torch.full((8, ), float(i)) * 0.1 + float(np.random.rand()) + random.random()
        return dict(inputs=x, target=torch.tensor(float(i % 3)))


class _Dropout(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(16, 1)

    def forward(self, inputs, target=None, mode='tensor'):
        out = self.fc2(self.drop(torch.tanh(self.fc1(inputs)))).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((out - target) ** 2).mean())
        return out


@pytest.fixture
def restore_determinism():
    yield
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic = False
    torch.backends.cudnn.benchmark = False


_RUNS = iter(range(10 ** 6))


def _train(work_dir, max_iters, hook, resume_from=None, distributed=False):
    from mmengine.runner import Runner

    from mmlk.checkpoint.mmengine_compat import allow_mmengine_checkpoint_globals
    allow_mmengine_checkpoint_globals()  # as tools/train.py: mmengine's run state through weights_only
    torch.manual_seed(0)  # the same model initialisation in every run
    runner = Runner(
        model=_Dropout(), work_dir=str(work_dir), experiment_name=f'rng_{next(_RUNS)}',
        train_dataloader=dict(dataset=_Augmented(), sampler=dict(type='InfiniteSampler', shuffle=True),
                              batch_size=4, num_workers=0, collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=3, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=100)),
        custom_hooks=[dict(type='mmlk.RNGStateHook')] if hook else [],
        randomness=dict(seed=0, deterministic=True, diff_rank_seed=distributed), resume=resume_from is not None,
        load_from=resume_from, default_scope='mmengine',
        # The process group exists already (gloo on CPU): DDP without device ids keeps the ranks in step.
        launcher='pytorch' if distributed else 'none',
        cfg=dict(model_wrapper_cfg=dict(type='MMDistributedDataParallel', device_ids=None,
                                        broadcast_buffers=False)) if distributed else None)
    runner.train()
    model = getattr(runner.model, 'module', runner.model)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_resumed_run_repeats_the_uninterrupted_one(tmp_path, restore_determinism):
    full = _train(tmp_path / 'full', 6, hook=True)
    _train(tmp_path / 'cut', 3, hook=True)  # "killed" after the checkpoint of iteration 3
    resumed = _train(tmp_path / 'cut', 6, hook=True, resume_from=str(tmp_path / 'cut' / 'iter_3.pth'))
    assert _equal(full, resumed)
    ckpt = torch.load(str(tmp_path / 'cut' / 'iter_3.pth'), weights_only=True)  # still plain data
    assert len(ckpt['mmlk_rng_state']) == 1
    # Without the hook the dropout masks after the resume differ (what the issue measured).
    _train(tmp_path / 'plain', 3, hook=False)
    plain = _train(tmp_path / 'plain', 6, hook=False, resume_from=str(tmp_path / 'plain' / 'iter_3.pth'))
    assert not _equal(full, plain)


def test_train_tool_adds_the_hook_once():
    cfg = Config(dict(custom_hooks=[dict(type='EMAHook')]))
    apply_rng_state_hook(cfg)
    apply_rng_state_hook(cfg)
    assert [h['type'] for h in cfg.custom_hooks] == ['EMAHook', 'mmlk.RNGStateHook']


def _ckpt(path, mtime):
    torch.save({'state_dict': {'w': torch.ones(2)}, 'meta': {'iter': 1}}, str(path))
    os.utime(path, (mtime, mtime))


def test_resume_with_an_empty_last_checkpoint_takes_the_newest(tmp_path, caplog):
    work = tmp_path / 'work'
    work.mkdir()
    _ckpt(work / 'iter_2.pth', 1000)
    _ckpt(work / 'iter_4.pth', 2000)
    (work / 'last_checkpoint').write_text('')
    cfg = Config(dict(work_dir=str(work)))
    apply_resume(cfg, 'auto')
    assert cfg.resume is True and cfg.load_from == str(work / 'iter_4.pth')
    # A damaged newest file (killed while saving) is skipped.
    data = (work / 'iter_4.pth').read_bytes()
    (work / 'iter_4.pth').write_bytes(data[:len(data) // 2])
    assert find_resume_checkpoint(str(work)) == str(work / 'iter_2.pth')
    # last_checkpoint naming a file that exists is followed as mmengine does.
    (work / 'last_checkpoint').write_text(str(work / 'iter_2.pth'))
    assert find_resume_checkpoint(str(work)) == str(work / 'iter_2.pth')
    # Nothing to resume from: training starts from scratch (load_from None), as in mmengine.
    empty = tmp_path / 'empty'
    empty.mkdir()
    (empty / 'last_checkpoint').write_text('\n')
    assert find_resume_checkpoint(str(empty)) is None
    assert osp.isdir(empty)


def _rank_main(rank, port, root, queue):
    import torch.distributed as dist
    try:
        torch.set_num_threads(1)
        os.environ.update(LOCAL_RANK=str(rank), RANK=str(rank), WORLD_SIZE='2')  # what torchrun sets
        dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2)
        full = _train(osp.join(root, 'full'), 6, hook=True, distributed=True)
        _train(osp.join(root, 'cut'), 3, hook=True, distributed=True)
        resumed = _train(osp.join(root, 'cut'), 6, hook=True, resume_from=osp.join(root, 'cut', 'iter_3.pth'),
                         distributed=True)
        queue.put((rank, _equal(full, resumed), full['fc2.bias'].item()))
        dist.destroy_process_group()
    except Exception as e:  # reported to the parent, which fails the test
        queue.put((rank, f'error: {e!r}', None))


@pytest.mark.slow
def test_each_rank_gets_its_own_states_back(tmp_path):
    """Two gloo ranks under DDP, each with its own seed, data shard and dropout masks: rank 0 writes both
    ranks' states, and each rank gets its own back."""
    import multiprocessing as mp
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context('fork')  # children inherit the imports
    queue = ctx.Queue()
    procs = [ctx.Process(target=_rank_main, args=(r, port, str(tmp_path), queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=240) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert [r[1] for r in results] == [True, True], results
    assert results[0][2] == results[1][2]  # DDP kept the ranks' weights in step
    ckpt = torch.load(str(tmp_path / 'cut' / 'iter_3.pth'), weights_only=True)
    assert len(ckpt['mmlk_rng_state']) == 2
    assert not torch.equal(ckpt['mmlk_rng_state'][0]['numpy']['key'], ckpt['mmlk_rng_state'][1]['numpy']['key'])
