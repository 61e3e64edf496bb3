"""Shared fixtures: the repository root and small generated datasets (built once per test session)."""
import os
import os.path as osp
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# Two cores are shared by every test: keep torch from oversubscribing them.
os.environ.setdefault('OMP_NUM_THREADS', '2')


@pytest.fixture(scope='session')
def repo_root() -> str:
    return REPO


@pytest.fixture(scope='session')
def mini_ade20k(tmp_path_factory) -> str:
    """A 24-train / 8-val mini ADE20K at 64 px (the demo uses 320 / 64 at 128 px)."""
    from mmlk.datasets.mini import make_ade20k
    root = str(tmp_path_factory.mktemp('data') / 'ade20k_mini')
    make_ade20k(root, num_train=24, num_val=8, size=64)
    return root
