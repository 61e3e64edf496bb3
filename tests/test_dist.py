"""Distributed training through ``tools/dist_train.sh``: 2 CPU processes (gloo) on one segmentation config.

The published UperNet Cityscapes config runs unchanged apart from data location, tiny sizes, a small
backbone and 2 iterations. What is checked is the multi-process path itself: torchrun starts two
ranks, mmengine's runner initialises the process group (NCCL switched to gloo without CUDA), the
data is sharded, the global batch counts both ranks (``--auto-scale-lr`` rescales by it), rank 0 saves
the checkpoint and the distributed validation gathers a metric.
"""
import glob
import os
import os.path as osp
import re
import socket
import subprocess
import sys
from typing import List

import pytest
from _helpers import REPLKNET_TINY_RUN

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = 'configs/replknet/upernet_replknet-31b_in1k-pre_32xb2-20k_cityscapes-769x769.py'


def _opt(key: str, value) -> str:
    text = repr(value).replace(' ', '').replace("'", '')
    return f'{key}={text}'


def _free_port() -> int:
    # several test sessions share the machine: never assume torchrun's default 29500 is free
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture(scope='module')
def mini_cityscapes(tmp_path_factory) -> str:
    """8 train / 4 val frames of 64x128 px in the Cityscapes layout."""
    from mmlk.synthetic import make_cityscapes
    root = str(tmp_path_factory.mktemp('data') / 'cityscapes_mini')
    make_cityscapes(root, num_train=8, num_val=4, size=64)
    return root


def test_mini_cityscapes_layout_is_what_mmseg_reads(tmp_path):
    import numpy as np
    from PIL import Image

    from mmlk.synthetic import CITYSCAPES_CLASSES, make_cityscapes
    root = str(tmp_path / 'cityscapes')
    summary = make_cityscapes(root, num_train=3, num_val=2, size=32, num_classes=4, seed=1)
    assert summary['classes'] == list(CITYSCAPES_CLASSES[:5])
    for split, count in (('train', 3), ('val', 2)):
        images = sorted(glob.glob(osp.join(root, 'leftImg8bit', split, '*', '*_leftImg8bit.png')))
        assert len(images) == count
        for path in images:
            label_path = path.replace('leftImg8bit', 'gtFine', 1).replace('_leftImg8bit.png',
                                                                         '_gtFine_labelTrainIds.png')
            image, label = np.asarray(Image.open(path)), np.asarray(Image.open(label_path))
            assert image.shape == (32, 64, 3) and label.shape == (32, 64)
            # train ids of the background and the 4 shape classes, plus the ignore index
            assert set(np.unique(label)) <= {0, 1, 2, 3, 4, 255}
            assert (label == 0).any() and (label == 255).any()


def _options(data_root: str) -> List[str]:
    opts = [f'{loader}.dataset.data_root={data_root}'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    opts += [
        # the published 769-px recipe's transforms, scaled to 64-px crops of the 64x128 mini frames
        _opt('train_dataloader.dataset.pipeline.2.scale', (128, 64)),
        _opt('train_dataloader.dataset.pipeline.3.crop_size', (64, 64)),
        _opt('val_dataloader.dataset.pipeline.1.scale', (128, 64)),
        _opt('model.data_preprocessor.size', (64, 64)),
        'model.backbone.arch._delete_=True',
        *[_opt(f'model.backbone.arch.{k}', v) for k, v in REPLKNET_TINY_RUN.items()],
        _opt('model.decode_head.in_channels', REPLKNET_TINY_RUN['channels']),
        _opt('model.auxiliary_head.in_channels', REPLKNET_TINY_RUN['channels'][2]),
        # same UperNet structure, narrower heads (the 512-channel head dominates a CPU step)
        'model.decode_head.channels=32', 'model.auxiliary_head.channels=16',
        'model.backbone.init_cfg=None',
        'train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2',
        'default_hooks.logger.interval=1', 'randomness.seed=0',
    ]
    for loader in ('train_dataloader', 'val_dataloader'):
        opts += [f'{loader}.num_workers=0', f'{loader}.persistent_workers=False']
    return opts


@pytest.mark.slow
def test_dist_train_two_cpu_processes(mini_cityscapes, tmp_path):
    work_dir = str(tmp_path / 'work')
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(_free_port()), OMP_NUM_THREADS='1',
               PYTHONPATH=REPO)
    out = subprocess.run(['bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir', work_dir, '--auto-scale-lr',
                          '--cfg-options', *_options(mini_cityscapes)],
                         capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert 'Distributed training: True' in log and 'GPU number: 2' in log, log[-3000:]
    # the global batch is 2 ranks x 2 images, rescaled (--auto-scale-lr) against the published 32 x 2
    assert 'LR is set based on batch size of 64 and the current batch size is 4' in log, log[-3000:]
    assert re.search(r'Iter\(train\) \[2/2\]', log), log[-3000:]
    assert re.search(r'Iter\(val\) .*mIoU: [0-9.]+', log), log[-3000:]
    assert osp.isfile(osp.join(work_dir, 'iter_2.pth'))
    # Rank 0 writes the checkpoint, but it carries both ranks' RNG states (mmlk.RNGStateHook, issue #11).
    from mmlk.checkpoint.mmengine_compat import allow_mmengine_checkpoint_globals
    from mmlk.checkpoint.safe_load import load_checkpoint_safely
    allow_mmengine_checkpoint_globals()
    states = load_checkpoint_safely(osp.join(work_dir, 'iter_2.pth'), 'cpu')['mmlk_rng_state']
    assert len(states) == 2
