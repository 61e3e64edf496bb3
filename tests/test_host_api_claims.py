"""Each claim the README / docs make about a host library's API, exercised as written (issue #22.5).

What holds and what does not, in the host libraries themselves (mmpretrain 1.2.0, mmengine 0.10.7):

* ``mmpretrain.apis.inference_model`` on a model built locally (not by ``get_model``) raises
  ``NotImplementedError`` in mmpretrain -- for a plain ResNet too; ``ImageClassificationInferencer(model=<config>,
  pretrained=<checkpoint or False>)`` is the working call.
* ``mmpretrain.get_model('<an mmlk model name>')`` does not know mmlk's models (mmpretrain's ModelHub reads only
  its own model-index.yml); build from mmlk's config files instead.
* RepLKNet takes ``in_channels``.
* A dict ``arch`` over a config whose ``arch`` is a string needs ``_delete_=True``.
"""
import os.path as osp

import numpy as np
import pytest
import torch

pytest.importorskip('mmpretrain')

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_LK = dict(large_kernel_sizes=[7, 7, 5, 5], layers=[1, 1, 1, 1], channels=[8, 16, 32, 64], small_kernel=3,
               dw_ratio=1, ffn_ratio=2)


def _user_config(tmp_path, delete=True) -> str:
    path = tmp_path / 'my_replknet.py'
    arch = dict(TINY_LK, _delete_=True) if delete else TINY_LK
    path.write_text(f"_base_ = [{osp.join(REPO, 'configs/replknet/replknet-31b_32xb64_in1k-224.py')!r}]\n"
                    f"model = dict(backbone=dict(num_classes=5, arch={arch!r}))\n"
                    "data_preprocessor = dict(num_classes=5)\n")
    return str(path)


@pytest.mark.parametrize('which', ['mmlk', 'resnet'])
def test_mmpretrain_inference_model_on_a_locally_built_model_raises_not_implemented(tmp_path, which):
    import mmlk  # noqa: F401
    from mmengine.registry import DefaultScope
    from mmpretrain.apis import inference_model
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        if which == 'mmlk':
            from mmengine.config import Config
            model = MODELS.build(Config.fromfile(_user_config(tmp_path)).model)
        else:
            model = MODELS.build(dict(type='ImageClassifier', backbone=dict(type='ResNet', depth=18),
                                      neck=dict(type='GlobalAveragePooling'),
                                      head=dict(type='LinearClsHead', num_classes=5, in_channels=512)))
        with pytest.raises(NotImplementedError):
            inference_model(model, np.zeros((32, 32, 3), np.uint8))


def test_image_classification_inferencer_with_an_mmlk_config_is_the_working_call(tmp_path):
    import mmlk  # noqa: F401
    from mmengine.registry import DefaultScope
    from mmpretrain.apis import ImageClassificationInferencer
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        inferencer = ImageClassificationInferencer(model=_user_config(tmp_path), pretrained=False, device='cpu')
        result = inferencer(np.random.randint(0, 255, (64, 64, 3), np.uint8))[0]
    assert 0 <= result['pred_label'] < 5


def test_mmpretrain_get_model_does_not_know_mmlk_model_names():
    import mmlk  # noqa: F401
    from mmpretrain import get_model
    with pytest.raises(ValueError, match='Failed to find model'):
        get_model('repnext-m0_in1k')


def test_replknet_takes_in_channels():
    from mmlk.models.replknet.model import RepLKNet
    model = RepLKNet(arch=dict(TINY_LK), in_channels=1, out_indices=(3,), lk_impl='torch').eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, 64, 64))
    assert out[-1].shape[1] == TINY_LK['channels'][-1]


def test_a_dict_arch_over_a_string_arch_needs_delete(tmp_path):
    from mmengine.config import Config
    with pytest.raises(TypeError, match='_delete_=True'):
        Config.fromfile(_user_config(tmp_path, delete=False))
    assert Config.fromfile(_user_config(tmp_path)).model.backbone.arch == TINY_LK
