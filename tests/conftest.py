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


# ----------------------------------------------------------------------------- parallel runs (pytest-xdist)
# `make test` runs the suite on every core (`-n auto --dist loadgroup`). Tests are handed out one by one, except
# that the tests of a file that defines a module- or class-scoped fixture (a training run, an installed copy, a
# trained work dir: "train once, test many") go to ONE worker as one unit, so that the fixture still runs once;
# the largest units start first. Session-scoped fixtures run once per worker: keep them cheap (tiny data).
# (Not xdist's own `xdist_group` marks: xdist 3.8 tags their node ids through an attribute pytest 9.2 no longer
# reads, so the marks are silently ignored there. The controller collects nothing, so the files are read here.)
def _files_with_shared_fixtures(root: str) -> set:
    import ast
    import glob
    shared = set()
    for path in glob.glob(osp.join(root, 'tests', '**', 'test_*.py'), recursive=True):
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                    isinstance(d, ast.Call) and any(k.arg == 'scope' and isinstance(k.value, ast.Constant)
                                                    and k.value.value in ('module', 'class', 'package')
                                                    for k in d.keywords)
                    for d in node.decorator_list):
                shared.add(osp.relpath(path, root).replace(os.sep, '/'))
                break
    return shared


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue('dist') != 'loadgroup':
        return None
    from xdist.scheduler import LoadScopeScheduling
    shared = _files_with_shared_fixtures(str(config.rootpath))

    class SharedFixtureScheduling(LoadScopeScheduling):
        """One work unit per test, or per file for the files in ``shared``."""

        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split('::', 1)[0]
            return path if path in shared else nodeid

    return SharedFixtureScheduling(config, log)


# ----------------------------------------------------------------------------- test isolation
# A test's result must not depend on which tests ran before it in the same process (a fresh clone's CI run once
# failed a test of test_replknet.py that passed alone). So every test starts from the same random state, and the
# process-wide settings a test may change are put back after it (and reported: the test should restore them).
_LEAKS: list = []


def _global_state() -> dict:
    state = dict(threads=torch.get_num_threads(), default_dtype=torch.get_default_dtype(),
                 deterministic=torch.are_deterministic_algorithms_enabled(), grad=torch.is_grad_enabled(),
                 autocast_cpu=(torch.is_autocast_enabled('cpu'), torch.get_autocast_dtype('cpu')),
                 matmul_precision=torch.get_float32_matmul_precision(), mkldnn=torch.backends.mkldnn.enabled,
                 env={k: os.environ.get(k) for k in ('MMLK_DWCONV_TUNE', 'MMLK_CACHE_DIR', 'OMP_NUM_THREADS')})
    tune = sys.modules.get('mmlk.ops._tune')
    if tune is not None:
        state['tuner_timer'] = tune.get_tuner().timer
    manager = sys.modules.get('mmengine.registry.default_scope')
    if manager is not None:
        # mmengine's "current" default scope is the most recently CREATED instance: a Runner or a host's
        # init_default_scope in one test changes which registry an unscoped type resolves in, in every later test
        scope = manager.DefaultScope
        state['_default_scope'] = (scope.get_current_instance().scope_name if scope._instance_dict else None)
        state['_default_scope_instances'] = dict(scope._instance_dict)
    return state


def _restore(before: dict, after: dict) -> None:
    if after['threads'] != before['threads']:
        torch.set_num_threads(before['threads'])
    if after['default_dtype'] != before['default_dtype']:
        torch.set_default_dtype(before['default_dtype'])
    if after['deterministic'] != before['deterministic']:
        torch.use_deterministic_algorithms(before['deterministic'])
    if after['grad'] != before['grad']:
        torch.set_grad_enabled(before['grad'])
    for k, v in before['env'].items():
        if after['env'][k] != v:
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if 'tuner_timer' in before and after.get('tuner_timer') is not before['tuner_timer']:
        sys.modules['mmlk.ops._tune'].set_timer(before['tuner_timer'])
    if after['autocast_cpu'] != before['autocast_cpu']:
        torch.set_autocast_enabled('cpu', before['autocast_cpu'][0])
        torch.set_autocast_dtype('cpu', before['autocast_cpu'][1])
    if after['matmul_precision'] != before['matmul_precision']:
        torch.set_float32_matmul_precision(before['matmul_precision'])
    if after['mkldnn'] != before['mkldnn']:
        torch.backends.mkldnn.enabled = before['mkldnn']
    if '_default_scope' in before and after.get('_default_scope') != before['_default_scope']:
        # as mmengine's own DefaultScope.overwrite_default_scope puts the previous state back
        instances = sys.modules['mmengine.registry.default_scope'].DefaultScope._instance_dict
        instances.clear()
        instances.update(before['_default_scope_instances'])


@pytest.fixture(autouse=True)
def _isolated_global_state(request):
    import random

    import numpy as np
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    before = _global_state()
    yield
    after = _global_state()
    changed = sorted(k for k in before if not k.startswith('_') and after.get(k) != before[k])
    if changed:
        # a report property: under pytest-xdist the worker's list would never reach the summary below
        request.node.user_properties.append(('leaked_state', ', '.join(f'{k} {before[k]!r} -> {after.get(k)!r}'
                                                                        for k in changed)))
    # '_' keys are put back without a report: a Runner or a host's init_default_scope setting mmengine's default
    # scope is what those libraries do, not a test's bug; the next test must still start from the same scope
    if changed or any(after.get(k) != before[k] for k in before if k.startswith('_')):
        _restore(before, after)


def pytest_runtest_logreport(report) -> None:
    if report.when == 'teardown':
        _LEAKS.extend(f'{report.nodeid}: {value}' for key, value in report.user_properties if key == 'leaked_state')


def pytest_terminal_summary(terminalreporter) -> None:
    if _LEAKS:
        terminalreporter.section('process-wide state changed by a test (restored after it)')
        for line in _LEAKS:
            terminalreporter.write_line(line)


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
