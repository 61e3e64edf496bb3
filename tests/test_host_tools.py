"""The host libraries' OWN entry points on mmlk models and checkpoints, the way a new user runs them.

Configs are user-style: they inherit a host (``mmseg::`` / ``mmdet::``) or mmlk config and add only
``custom_imports=dict(imports=['mmlk'])`` and the backbone swap; run sizes (mini datasets, tiny widths, a few
iterations) come from ``--cfg-options`` or, where the host tool takes no options, from a child config. The
scripts are the copies the wheels ship under ``site-packages/<lib>/.mim/tools``. No environment variable is
set, except ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` where a test shows that a malicious file is refused anyway.
Each library's commands run as one flow in one process (``_helpers.run_flow``: each command is its own
``__main__``), and its work dir then serves the API and inferencer tests in this process.

Covered: mmseg ``train.py`` -> ``train.py --resume`` -> ``test.py``, ``init_model`` / ``inference_model``,
``MMSegInferencer``; mmdet ``train.py`` -> ``test.py``, ``init_detector`` / ``inference_detector``,
``DetInferencer``; mmpretrain ``train.py`` (EMA on) -> ``reparameterize_model.py`` -> ``test.py`` with mmlk's
deploy config, ``init_model``, ``ImageClassificationInferencer``; and the weights_only allow-list itself.
"""
import copyreg
import os
import os.path as osp
import pickle
import re
import sys
from typing import Dict, List

import numpy as np
import pytest
import torch

import mmlk  # noqa: F401  (installs the allow-list, as custom_imports does in the tools)
from mmlk.checkpoint import mmengine_compat
from _helpers import REPLKNET_TINY_RUN, run_flow

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_REPNEXT = dict(embed_dims=[8, 16, 32, 64], depths=[1, 1, 1, 1])


def host_tool(lib: str, *parts: str) -> str:
    """A script the host library's wheel ships (``site-packages/<lib>/.mim/tools/...``)."""
    import importlib.util
    spec = importlib.util.find_spec(lib)
    if spec is None:
        pytest.skip(f'{lib} is not installed')
    path = osp.join(spec.submodule_search_locations[0], '.mim', 'tools', *parts)
    if not osp.isfile(path):
        pytest.skip(f'{lib} ships no {"/".join(parts)} here')
    return path


def _opt(key: str, value) -> str:
    """One ``--cfg-options`` item in the syntax mmengine's DictAction parses."""
    return f'{key}={repr(value).replace(" ", "").replace(chr(39), "")}'


def _env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith('TORCH_FORCE_')}
    # this worktree's mmlk first, whatever is installed in the environment
    env.update(OMP_NUM_THREADS='1', PYTHONPATH=os.pathsep.join(filter(None, [REPO, env.get('PYTHONPATH')])))
    env.update(extra)
    return env


# ------------------------------------------------------------------------------------ malicious files
class _Call:
    """Pickles as ``fn(*args)``; ``fn`` may itself be a pickled call (a gadget chain)."""

    def __init__(self, fn, *args) -> None:
        self.fn, self.args = fn, args

    def __call__(self):  # pickle insists that the reduce target is callable
        raise NotImplementedError

    def __reduce__(self):
        return self.fn, self.args


def write_malicious(path: str, marker: str, via_getattr: bool = False) -> str:
    """A checkpoint that writes ``marker`` when unpickled with anything but a safe allow-list.

    ``via_getattr`` builds the payload only from ``getattr`` calls on a ``HistoryBuffer`` statistics method
    (``HistoryBuffer.min.__globals__['__builtins__']['exec']``): what an allow-list holding the real
    ``getattr`` would let through even under ``weights_only=True``.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    code = f'open({marker!r}, "w").write("pwned")'
    if via_getattr:
        method = _Call(getattr, HistoryBuffer, 'min')
        module_globals = _Call(getattr, method, '__globals__')
        builtins = _Call(_Call(getattr, module_globals, 'get'), '__builtins__')
        payload = _Call(_Call(_Call(getattr, builtins, 'get'), 'exec'), code)
    else:
        payload = _Call(exec, code)
    torch.save({'meta': {}, 'state_dict': {}, 'message_hub': payload}, path)
    return path


@pytest.fixture
def malicious(tmp_path):
    marker = str(tmp_path / 'PWNED')
    return write_malicious(str(tmp_path / 'evil.pth'), marker), marker


def assert_refused(fn, marker: str) -> None:
    with pytest.raises(Exception) as info:
        fn()
    text = f'{type(info.value).__name__}: {info.value}'
    assert 'Unsupported global' in text or 'refusing' in text or 'Unpickling' in text, text[:2000]
    assert not osp.exists(marker), 'the payload ran'


# ------------------------------------------------------------------------------- the allow-list itself
# What torch.save itself refers to for tensors and ordered dicts.
TORCH_GLOBALS = {'torch._utils _rebuild_tensor_v2', 'torch FloatStorage', 'collections OrderedDict'}


def pickled_globals(path: str) -> set:
    """``'module name'`` of every global a torch.save file's pickle refers to (read, never unpickled)."""
    import pickletools
    import zipfile
    with zipfile.ZipFile(path) as zf:
        data = zf.read(next(n for n in zf.namelist() if n.endswith('data.pkl')))
    return {arg.replace('\n', ' ') if isinstance(arg, str) else arg
            for op, arg, _ in pickletools.genops(data) if op.name in ('GLOBAL', 'STACK_GLOBAL')}


def _runner_style_checkpoint(name: str) -> dict:
    """What mmengine 0.10.7's Runner saves: message hub with HistoryBuffers, numpy values, a state dict."""
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance(f'mmlk_test_allowlist_{name}')
    for i in range(3):
        hub.update_scalar('train/loss', 1.0 / (i + 1))
    hub.update_info('iter', 3)
    hub.update_info('best_score', np.float64(0.25))
    return {'meta': {'epoch': 1, 'iter': 3, 'seed': np.int64(0)}, 'state_dict': {'w': torch.ones(2)},
            'message_hub': hub.state_dict(), 'ema': np.arange(3.0)}


def test_mmengine_checkpoint_globals_are_allowed_and_nothing_more(tmp_path):
    from mmengine.logging.history_buffer import HistoryBuffer
    # A file written WITHOUT mmlk's reducer: what a process that never imported mmlk produces.
    reducer = copyreg.dispatch_table.pop(HistoryBuffer)
    try:
        plain = str(tmp_path / 'plain.pth')
        torch.save(_runner_style_checkpoint('plain'), plain)
        # mmengine's statistics methods are pickled by reference through getattr
        torch.save({'method': HistoryBuffer.min, 'bound': HistoryBuffer([1.0], [1]).max},
                   str(tmp_path / 'methods.pth'))
    finally:
        copyreg.pickle(HistoryBuffer, reducer)
    loaded = torch.load(plain, weights_only=True)
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer) and buffer.current() == pytest.approx(1 / 3)
    methods = torch.load(str(tmp_path / 'methods.pth'), weights_only=True)
    assert methods['method'] is HistoryBuffer.min and methods['bound']() == 1.0

    # Written after `import mmlk`: the HistoryBuffer is plain lists, no getattr, no numpy arrays in it.
    ours = str(tmp_path / 'ours.pth')
    ckpt = _runner_style_checkpoint('ours')
    del ckpt['ema'], ckpt['meta']['seed'], ckpt['message_hub']['runtime_info']['best_score']
    torch.save(ckpt, ours)
    assert pickled_globals(ours) - TORCH_GLOBALS == {'mmengine.logging.history_buffer HistoryBuffer'}
    again = torch.load(ours, weights_only=True)['message_hub']['log_scalars']['train/loss']
    np.testing.assert_array_equal(again.data[0], buffer.data[0])

    # The getattr stand-in resolves only the statistics methods of HistoryBuffer.
    assert mmengine_compat.history_buffer_statistic(HistoryBuffer, 'mean') is HistoryBuffer.mean
    for obj, name in ((HistoryBuffer, '__init__'), (HistoryBuffer, 'register_statistics'),
                      (HistoryBuffer.min, '__globals__'), (np.ndarray, 'min'), (os, 'system')):
        with pytest.raises(pickle.UnpicklingError, match='refusing getattr'):
            mmengine_compat.history_buffer_statistic(obj, name)


@pytest.mark.parametrize('via_getattr', [False, True], ids=['exec', 'getattr-chain'])
def test_malicious_checkpoint_is_refused_by_every_loader(tmp_path, monkeypatch, via_getattr):
    from mmengine.runner.checkpoint import _load_checkpoint

    from mmlk.checkpoint.reader import read_checkpoint
    marker = str(tmp_path / 'PWNED')
    evil = write_malicious(str(tmp_path / 'evil.pth'), marker, via_getattr=via_getattr)
    assert_refused(lambda: torch.load(evil), marker)
    assert_refused(lambda: read_checkpoint(evil), marker)
    # The variable that makes torch.load run code: mmengine's loader (every host tool and API) still refuses.
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    assert_refused(lambda: _load_checkpoint(evil, map_location='cpu'), marker)
    assert_refused(lambda: read_checkpoint(evil), marker)
    sys.path.insert(0, osp.join(REPO, 'tools', 'model_converters'))
    try:
        import reparameterize
    finally:
        sys.path.pop(0)
    assert_refused(lambda: reparameterize.main([evil, str(tmp_path / 'out.pth')]), marker)


# ------------------------------------------------------------------------------------- shared helpers
def write_configs(tmp: str, name: str, user: str, run_size: str) -> str:
    """``<name>.py`` is the user's config; ``<name>_tiny.py`` inherits it and only shrinks the model.

    Model sizes live in a config file (not ``--cfg-options``) because ``init_model`` and the inferencers
    take a config file only and must build the model the checkpoint was trained as.
    """
    with open(osp.join(tmp, f'{name}.py'), 'w') as f:
        f.write(user)
    path = osp.join(tmp, f'{name}_tiny.py')
    with open(path, 'w') as f:
        f.write(f"_base_ = ['./{name}.py']\n{run_size}")
    return path


def loader_options(data_root: str) -> List[str]:
    opts = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.dataset.data_root={data_root}', f'{loader}.num_workers=0',
                 f'{loader}.persistent_workers=False']
    return opts + ['default_hooks.logger.interval=1', 'randomness.seed=0']


def an_image(size=(64, 64)) -> np.ndarray:
    return (np.random.default_rng(0).random((*size, 3)) * 255).astype(np.uint8)


# ------------------------------------------------------------------------------------- mmsegmentation
SEG_USER = f"""_base_ = ['mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py']
custom_imports = dict(imports=['mmlk'], allow_failed_imports=False)
model = dict(
    pretrained=None,  # the base's ResNet weights (EncoderDecoder hands `pretrained` to the backbone)
    backbone=dict(_delete_=True, type='mmlk.RepLKNet', arch={REPLKNET_TINY_RUN!r}, out_indices=(0, 1, 2, 3)),
    decode_head=dict(in_channels={REPLKNET_TINY_RUN['channels']!r}),
    auxiliary_head=dict(in_channels={REPLKNET_TINY_RUN['channels'][2]}))
"""
# CPU: plain BN in the heads (mmseg's base uses SyncBN); narrow heads (512 channels dominate a CPU step).
SEG_TINY = """model = dict(data_preprocessor=dict(size=(64, 64)),
             decode_head=dict(channels=16, norm_cfg=dict(type='BN', requires_grad=True)),
             auxiliary_head=dict(channels=8, norm_cfg=dict(type='BN', requires_grad=True)))
"""


def seg_options(data_root: str, crop: int = 64) -> List[str]:
    """The base config's own pipelines at 64-px crops of the mini ADE20K, 2 iterations, no validation."""
    return loader_options(data_root) + [
        _opt('train_dataloader.dataset.pipeline.2.scale', (4 * crop, crop)),
        _opt('train_dataloader.dataset.pipeline.3.crop_size', (crop, crop)),
        _opt('val_dataloader.dataset.pipeline.1.scale', (4 * crop, crop)),
        _opt('test_dataloader.dataset.pipeline.1.scale', (4 * crop, crop)),
        'train_dataloader.batch_size=2', 'train_cfg.max_iters=2', 'train_cfg.val_interval=100',
        'default_hooks.checkpoint.interval=1']


@pytest.fixture(scope='module')
def seg_run(mini_ade20k, tmp_path_factory):
    """One process: mmseg's train.py for 2 iterations, ``train.py --resume`` to iteration 3, then its test.py on
    the checkpoint and on a malicious file (with ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``)."""
    tmp = str(tmp_path_factory.mktemp('seg'))
    config = write_configs(tmp, 'upernet_replknet_ade20k', SEG_USER, SEG_TINY)
    work_dir = osp.join(tmp, 'work')
    opts = seg_options(mini_ade20k)
    train, test = host_tool('mmseg', 'train.py'), host_tool('mmseg', 'test.py')
    ckpt = osp.join(work_dir, 'iter_3.pth')
    marker = osp.join(tmp, 'PWNED')
    evil = write_malicious(osp.join(tmp, 'evil.pth'), marker)
    logs = run_flow(
        [train, config, '--work-dir', work_dir, '--cfg-options', *opts],
        # mmseg's --resume is a flag: the latest checkpoint of the work dir (it holds the message hub's buffers)
        [train, config, '--work-dir', work_dir, '--resume', '--cfg-options', *opts, 'train_cfg.max_iters=3'],
        [test, config, ckpt, '--work-dir', osp.join(tmp, 'test'), '--cfg-options', *opts],
        [test, config, evil, '--work-dir', osp.join(tmp, 'test'), '--cfg-options', *opts],
        step_env=[None, None, None, dict(TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1')],
        cwd=tmp, env=_env(), expect_ok=False)
    assert logs.codes[:3] == [0, 0, 0], logs[-1][-4000:]
    assert re.search(r'Iter\(train\) \[2/2\]', logs[0]), logs[0][-3000:]
    assert 'resumed epoch: 0, iter: 2' in logs[1], logs[1][-3000:]
    assert re.search(r'Iter\(train\) \[3/3\]', logs[1]), logs[1][-3000:]
    return dict(config=config, ckpt=ckpt, opts=opts, tmp=tmp, test_log=logs[2], evil_log=logs[3],
                evil_code=logs.codes[3], marker=marker)


@pytest.mark.slow
def test_mmseg_test_script_reads_the_trained_checkpoint_and_refuses_a_malicious_one(seg_run):
    assert re.search(r'mIoU: [0-9.]+', seg_run['test_log']), seg_run['test_log'][-3000:]
    assert seg_run['evil_code'] != 0, seg_run['evil_log'][-3000:]
    assert 'Unsupported global' in seg_run['evil_log'], seg_run['evil_log'][-3000:]
    assert not osp.exists(seg_run['marker'])


@pytest.mark.slow
def test_mmseg_apis_and_inferencer(seg_run, malicious):
    from mmseg.apis import MMSegInferencer, inference_model, init_model
    model = init_model(seg_run['config'], seg_run['ckpt'], device='cpu')
    assert tuple(inference_model(model, an_image()).pred_sem_seg.data.shape[-2:]) == (64, 64)
    inferencer = MMSegInferencer(model=seg_run['config'], weights=seg_run['ckpt'], device='cpu')
    assert inferencer(an_image())['predictions'].shape == (64, 64)
    evil, marker = malicious
    assert_refused(lambda: init_model(seg_run['config'], evil, device='cpu'), marker)
    assert_refused(lambda: MMSegInferencer(model=seg_run['config'], weights=evil, device='cpu'), marker)


# ------------------------------------------------------------------------------------------ mmdetection
DET_USER = f"""_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mmlk'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='mmlk.RepNeXt', arch={TINY_REPNEXT!r}, out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels={TINY_REPNEXT['embed_dims']!r}))
"""
# Same detector, narrower (at 256/1024 channels the RoI heads dominate a CPU step), fewer proposals.
DET_TINY = """W = 32
model = dict(
    neck=dict(out_channels=W), rpn_head=dict(in_channels=W, feat_channels=W),
    roi_head=dict(bbox_roi_extractor=dict(out_channels=W), mask_roi_extractor=dict(out_channels=W),
                  bbox_head=dict(in_channels=W, fc_out_channels=2 * W),
                  mask_head=dict(in_channels=W, conv_out_channels=W)),
    train_cfg=dict(rpn_proposal=dict(max_per_img=64), rcnn=dict(sampler=dict(num=32))),
    test_cfg=dict(rpn=dict(max_per_img=32), rcnn=dict(score_thr=0.0, max_per_img=20)))
"""


@pytest.fixture(scope='module')
def det_run(tmp_path_factory):
    """One process: mmdet's train.py for one epoch (2 iterations) on a 4-image mini COCO, then its test.py."""
    from mmlk.synthetic import make_coco
    tmp = str(tmp_path_factory.mktemp('det'))
    data_root = osp.join(tmp, 'coco_mini')
    make_coco(data_root, num_train=4, num_val=2, size=96)
    config = write_configs(tmp, 'mask-rcnn_repnext_coco', DET_USER, DET_TINY)
    ann_val = osp.join(data_root, 'annotations', 'instances_val2017.json')
    opts = loader_options(data_root) + [
        f'val_evaluator.ann_file={ann_val}', f'test_evaluator.ann_file={ann_val}',
        _opt('train_dataloader.dataset.pipeline.2.scale', (128, 96)),
        _opt('val_dataloader.dataset.pipeline.1.scale', (128, 96)),
        _opt('test_dataloader.dataset.pipeline.1.scale', (128, 96)),
        'train_dataloader.batch_size=2', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=2']
    work_dir = osp.join(tmp, 'work')
    ckpt = osp.join(work_dir, 'epoch_1.pth')
    log, test_log = run_flow(
        [host_tool('mmdet', 'train.py'), config, '--work-dir', work_dir, '--cfg-options', *opts],
        [host_tool('mmdet', 'test.py'), config, ckpt, '--work-dir', osp.join(tmp, 'test'), '--cfg-options', *opts],
        cwd=tmp, env=_env())
    assert re.search(r'Epoch\(train\)\s+\[1\]\[2/2\]', log), log[-3000:]
    return dict(config=config, ckpt=ckpt, opts=opts, tmp=tmp, test_log=test_log)


@pytest.mark.slow
def test_mmdet_test_script_apis_and_inferencer(det_run, malicious):
    assert re.search(r'bbox_mAP: [-0-9.]+', det_run['test_log']), det_run['test_log'][-3000:]

    from mmdet.apis import DetInferencer, inference_detector, init_detector
    model = init_detector(det_run['config'], det_run['ckpt'], device='cpu')
    result = inference_detector(model, an_image((96, 128)))
    assert result.pred_instances.bboxes.shape[-1] == 4
    inferencer = DetInferencer(model=det_run['config'], weights=det_run['ckpt'], device='cpu', show_progress=False)
    assert 'bboxes' in inferencer(an_image((96, 128)))['predictions'][0]
    evil, marker = malicious
    assert_refused(lambda: init_detector(det_run['config'], evil, device='cpu'), marker)
    assert_refused(lambda: DetInferencer(model=det_run['config'], weights=evil, device='cpu'), marker)


# ------------------------------------------------------------------------------------------- mmpretrain
CLS_TINY = f"""model = dict(backbone=dict(arch=dict(_delete_=True, **{TINY_REPNEXT!r})),
             head=dict(num_classes=5, in_channels={TINY_REPNEXT['embed_dims'][-1]}))
data_preprocessor = dict(num_classes=5)
"""


@pytest.fixture(scope='module')
def cls_run(tmp_path_factory):
    """One process: mmpretrain's train.py (EMA on) for one epoch, its reparameterize_model.py (backbone only), and
    its test.py on both forms."""
    from mmlk.synthetic import make_imagenet
    tmp = str(tmp_path_factory.mktemp('cls'))
    data_root = osp.join(tmp, 'imagenet_mini')
    make_imagenet(data_root, num_train=8, num_val=8, size=64, num_classes=5)
    train_cfg = write_configs(tmp, 'repnext', f"_base_ = [{osp.join(REPO, 'configs/repnext/repnext-m0_8xb256_in1k.py')!r}]\n",
                              CLS_TINY)
    deploy_cfg = write_configs(tmp, 'repnext_deploy',
                               f"_base_ = [{osp.join(REPO, 'configs/repnext/deploy/repnext-m0_8xb256_in1k.py')!r}]\n",
                               CLS_TINY)
    opts = loader_options(data_root) + [f'{loader}.batch_size=4' for loader in
                                        ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    opts += ['train_cfg.max_epochs=1', 'train_cfg.val_interval=2']
    work_dir = osp.join(tmp, 'work')
    ckpt = osp.join(work_dir, 'epoch_1.pth')
    deploy = osp.join(tmp, 'deploy.pth')
    test = host_tool('mmpretrain', 'test.py')
    log, _, train_form_log, deploy_form_log = run_flow(
        [host_tool('mmpretrain', 'train.py'), train_cfg, '--work-dir', work_dir, '--cfg-options', *opts],
        [host_tool('mmpretrain', 'model_converters', 'reparameterize_model.py'), train_cfg, ckpt, deploy],
        # the host test.py on the training form (EMA hook) and on the deploy config (no EMA hook)
        [test, train_cfg, ckpt, '--work-dir', osp.join(tmp, 'test'), '--cfg-options', *opts],
        [test, deploy_cfg, deploy, '--work-dir', osp.join(tmp, 'test'), '--cfg-options', *opts],
        cwd=tmp, env=_env())
    # mmlk's config keeps auto_scale_lr off (host convention) and its hook says so in the host's log
    assert re.search(r'WARNING - mmlk: the global batch is 4 .* NOT scaled.*--auto-scale-lr', log), log[-3000:]
    assert 'ema_state_dict' in torch.load(ckpt, weights_only=True), 'the config enables EMA'
    return dict(train_cfg=train_cfg, deploy_cfg=deploy_cfg, ckpt=ckpt, deploy=deploy, opts=opts, tmp=tmp,
                test_logs=(train_form_log, deploy_form_log))


@pytest.mark.slow
def test_mmpretrain_reparameterized_checkpoint_equals_the_trained_model(cls_run):
    from mmengine.runner import load_checkpoint
    from mmpretrain.apis import ImageClassificationInferencer, init_model
    trained = init_model(cls_run['train_cfg'], cls_run['ckpt'], device='cpu').eval()
    merged = init_model(cls_run['deploy_cfg'], cls_run['deploy'], device='cpu').eval()
    # strict: every key of the merged model (the merged head too) comes from the converted file
    load_checkpoint(merged, cls_run['deploy'], map_location='cpu', strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = trained.head(trained.extract_feat(x))
        got = merged.head(merged.extract_feat(x))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    # mmengine's current default scope is process-wide: an mmdet test earlier in this process leaves it at
    # 'mmdet', where mmpretrain's inferencer would look its transforms up (as it would for any user who mixes
    # host libraries in one process), so this one runs in mmpretrain's own scope.
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        inferencer = ImageClassificationInferencer(model=cls_run['deploy_cfg'], pretrained=cls_run['deploy'],
                                                   device='cpu')
        assert 0 <= inferencer(an_image())[0]['pred_label'] < 5


@pytest.mark.slow
def test_mmpretrain_test_script_on_the_deploy_config_matches_the_training_form(cls_run):
    """The host test.py with the deploy config (no EMA hook) reports the training-form accuracy."""
    top1 = []
    for log in cls_run['test_logs']:
        found = re.search(r'accuracy/top1: ([0-9.]+)', log)
        assert found, log[-3000:]
        top1.append(float(found.group(1)))
    assert top1[0] == top1[1]


@pytest.mark.slow
def test_mmpretrain_init_model_refuses_a_malicious_checkpoint(cls_run, malicious):
    from mmpretrain.apis import init_model
    evil, marker = malicious
    assert_refused(lambda: init_model(cls_run['train_cfg'], evil, device='cpu'), marker)


def test_global_batch_warning_names_the_factor_and_the_flag():
    from mmengine.config import Config

    from mmlk.engine.host_config import global_batch_warning
    cfg = Config(dict(auto_scale_lr=dict(enable=False, base_batch_size=16), train_dataloader=dict(batch_size=2)))
    message = global_batch_warning(cfg, world_size=2)
    assert 'global batch is 4 (2 process(es) x 2)' in message and 'x0.25' in message
    assert '--auto-scale-lr' in message and 'NOT scaled' in message
    assert global_batch_warning(cfg, world_size=8) is None
    cfg.auto_scale_lr.enable = True
    assert 'scaled by 0.25' in global_batch_warning(cfg, world_size=2)


def test_reading_through_mmlk_keeps_the_process_wide_allow_list(tmp_path):
    # Leaving torch's safe_globals context removes its entries process-wide: mmlk's readers must not pass
    # what `import mmlk` installed, or every later torch.load (the host tools') refuses Runner checkpoints.
    from mmengine.logging.history_buffer import HistoryBuffer

    from mmlk.checkpoint.reader import read_checkpoint
    path = str(tmp_path / 'runner.pth')
    torch.save(_runner_style_checkpoint('reader'), path)
    read_checkpoint(path)
    assert HistoryBuffer in torch.serialization.get_safe_globals()
    assert isinstance(torch.load(path, weights_only=True)['message_hub'], dict)


# ------------------------------------------------------------- a checkpoint of another family (issue #22.4)
def _other_family_checkpoint(path: str) -> str:
    """An mmengine-style checkpoint whose ``backbone.`` keys are a tiny RepLKNet's (the models below hold a RepNeXt)."""
    from mmlk.models.replknet.model import RepLKNet
    state = {f'backbone.{k}': v for k, v in RepLKNet(arch=dict(REPLKNET_TINY_RUN), lk_impl='torch').state_dict().items()}
    torch.save(dict(meta=dict(), state_dict=state), path)
    return path


def _assert_test_script_refuses(config: str, ckpt: str, opts: List[str], tmp: str, lib: str) -> None:
    logs = run_flow([host_tool(lib, 'test.py'), config, ckpt, '--work-dir', osp.join(tmp, 'wrong'),
                     '--cfg-options', *opts], cwd=tmp, env=_env(), expect_ok=False)
    assert logs.codes and logs.codes[-1] != 0, logs[-1][-3000:]
    log = logs[-1]
    assert 'CheckpointError' in log and 'RepNeXt' in log and 'RepLKNet' in log, log[-3000:]
    assert not re.search(r'accuracy/top1: |bbox_mAP: ', log), 'evaluated a randomly initialised backbone'


@pytest.mark.slow
def test_mmpretrain_test_script_refuses_a_checkpoint_of_another_family(cls_run):
    ckpt = _other_family_checkpoint(osp.join(cls_run['tmp'], 'replknet.pth'))
    _assert_test_script_refuses(cls_run['train_cfg'], ckpt, cls_run['opts'], cls_run['tmp'], 'mmpretrain')


@pytest.mark.slow
def test_mmdet_test_script_refuses_a_checkpoint_of_another_family(det_run):
    ckpt = _other_family_checkpoint(osp.join(det_run['tmp'], 'replknet.pth'))
    _assert_test_script_refuses(det_run['config'], ckpt, det_run['opts'], det_run['tmp'], 'mmdet')
