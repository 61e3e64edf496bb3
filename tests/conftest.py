"""Shared fixtures: the repository root and small generated datasets (built once per test session)."""
import os
import os.path as osp
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# The suite runs tiny models, where a second intra-op thread costs more in synchronisation than it
# gains (and with other processes on the two cores it can be 100x slower). Subprocesses inherit it.
os.environ.setdefault('OMP_NUM_THREADS', '1')
import torch  # noqa: E402

torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))


def pytest_configure(config) -> None:
    # `make test-fast` deselects these (-m 'not slow'); `make test` and CI run everything.
    config.addinivalue_line(
        'markers', 'slow: a test that runs a host training run, a subprocess flow (tools, demo, packaging), '
        'a full-size model or another multi-second job; deselected by `make test-fast`')


@pytest.fixture(scope='session')
def repo_root() -> str:
    return REPO


@pytest.fixture(scope='session')
def mini_ade20k(tmp_path_factory) -> str:
    """A 16-train / 8-val mini ADE20K at the demo's 128 px (the demo uses 320 / 64 images)."""
    from mmlk.synthetic import make_ade20k
    root = str(tmp_path_factory.mktemp('data') / 'ade20k_mini')
    make_ade20k(root, num_train=16, num_val=8, size=128)
    return root

# The op's runtime tuner times routes on first use; the suite checks the shipped table's choices instead (its
# own tests switch tuning on with fake timers), and keeps any tuning cache out of the user's home.
os.environ.setdefault('MMLK_DWCONV_TUNE', '0')
os.environ.setdefault('MMLK_CACHE_DIR', osp.join(os.environ.get('TMPDIR', '/tmp'), f'mmlk-test-cache-{os.getuid()}'))
