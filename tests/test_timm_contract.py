"""timm's generic model contract (what timm's own tests/test_models.py checks for every model) on mmlk's models.

Every registered mmlk timm name (with every pretrained tag) is checked for its ``pretrained_cfg`` and key
names, and every model for the output shapes of ``forward_features`` / ``forward_head(pre_logits)`` and of
``num_classes=0`` / ``global_pool=''`` at creation and through ``reset_classifier`` (on the 'meta' device, so
RepLKNet-XL's 335M parameters cost nothing). The smallest variant of each family (the others are the same
classes with other widths and depths) runs the same checks on real numbers, backward with every parameter
receiving a gradient, ``features_only`` / ``forward_intermediates``, TorchScript scripting (training and merged
form, output equal to eager) and torch.fx tracing with timm's FX helpers (forward equal, backward).

Inputs are small (64 px, timm's own tests clip to 96-128 px) to fit the CI budget of 2 CPU cores.
"""
import math

import pytest
import torch

timm = pytest.importorskip('timm')
from timm.models import get_notrace_functions, get_notrace_modules  # noqa: E402

import mmlk  # noqa: E402,F401  (registers the timm names)

SIZE = 64  # input side; every mmlk model has output stride 32


def _mmlk_model_names(include_tags: bool = False):
    from timm.models._registry import _model_entrypoints
    names = [n for n in timm.list_models(include_tags=include_tags)
             if _model_entrypoints[n.split('.')[0]].__module__.startswith('mmlk.')]
    return sorted(names)


MODELS = _mmlk_model_names()
TAGGED = _mmlk_model_names(include_tags=True)
# The smallest variant of each family carries the scripting / FX checks (same classes as the others).
SMALLEST = ['replknet_31b', 'repnext_m0', 'unireplknet_a']


def test_every_family_is_registered():
    assert {'replknet_31b', 'replknet_31l', 'replknet_xl', 'repnext_m0', 'repnext_m5'} <= set(MODELS)
    assert {f'unireplknet_{v}' for v in ('a', 'f', 'p', 'n', 't', 's', 'b', 'l', 'xl')} <= set(MODELS)
    assert set(SMALLEST) <= set(MODELS)


@pytest.mark.parametrize('name', TAGGED)
def test_pretrained_cfg_fields_and_key_names(name):
    """timm's test_model_default_cfgs, the parts that need no forward (the model is built on 'meta')."""
    with torch.device('meta'):
        model = timm.create_model(name, pretrained=False)
    cfg = model.pretrained_cfg
    for field in ('input_size', 'pool_size', 'crop_pct', 'interpolation', 'mean', 'std', 'first_conv',
                  'classifier', 'num_classes', 'license'):
        assert cfg.get(field) is not None, f'{name}: pretrained_cfg lacks {field}'
    assert len(cfg['mean']) == len(cfg['std']) == cfg['input_size'][0] == 3
    assert tuple(cfg['pool_size']) == tuple(math.ceil(s / 32) for s in cfg['input_size'][1:])
    assert model.num_classes == cfg['num_classes'] > 0
    assert model.num_features > 0 and model.head_hidden_size > 0
    keys = model.state_dict().keys()
    classifier = cfg['classifier'] if isinstance(cfg['classifier'], (tuple, list)) else (cfg['classifier'], )
    first_conv = cfg['first_conv'] if isinstance(cfg['first_conv'], (tuple, list)) else (cfg['first_conv'], )
    for prefix in tuple(classifier) + tuple(first_conv):
        assert prefix + '.weight' in keys, f'{name}: {prefix}.weight not in the state dict'


def _check_head_contract(name: str, device: str) -> None:
    """timm's test_model_default_cfgs forward checks and test_model_forward, on ``device``.

    ``forward`` is ``forward_head(forward_features(x))`` (checked once); after each classifier change only
    the head runs again, on the same features (a full-size forward on 'meta' still costs seconds).
    """
    torch.manual_seed(0)
    with torch.device(device):
        model = timm.create_model(name, pretrained=False).eval()
        x = torch.randn(1, 3, SIZE, SIZE)
    pool = SIZE // 32
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (1, model.num_features, pool, pool)
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (1, model.head_hidden_size)
        logits = model(x)
        assert logits.shape == (1, model.num_classes)
        if device != 'meta':
            assert not torch.isnan(logits).any()
            torch.testing.assert_close(model.forward_head(feats), logits)

        model.reset_classifier(0)
        assert model.num_classes == 0
        assert model.forward_head(feats).shape == pre.shape
        model.reset_classifier(0, '')
        assert model.forward_head(feats).shape == (1, model.num_features, pool, pool)
        del model
        for kwargs, shape in ((dict(num_classes=0, global_pool=''), feats.shape), (dict(num_classes=0), pre.shape)):
            with torch.device(device):
                other = timm.create_model(name, pretrained=False, **kwargs).eval()
            assert other.forward_head(feats).shape == shape
            del other
    with pytest.raises(ValueError, match='global_pool'):
        with torch.device('meta'):
            timm.create_model(name, pretrained=False, global_pool='max')


@pytest.mark.parametrize('name', MODELS)
def test_features_head_and_classifier_reset_shapes(name):
    """Every model, on the 'meta' device (shapes only: the full-size variants cost no memory or time)."""
    _check_head_contract(name, 'meta')


@pytest.mark.parametrize('name', SMALLEST)
def test_features_head_and_classifier_reset_values(name):
    _check_head_contract(name, 'cpu')


@pytest.mark.parametrize('name', SMALLEST)
def test_backward_reaches_every_parameter(name):
    model = timm.create_model(name, pretrained=False, num_classes=42).train()
    out = model(torch.randn(2, 3, SIZE, SIZE))
    if isinstance(out, tuple):
        out = torch.cat(out)
    assert out.shape[-1] == 42
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing[:5]


@pytest.mark.parametrize('name', SMALLEST)
def test_features_only_and_forward_intermediates(name):
    model = timm.create_model(name, pretrained=False, features_only=True).eval()
    channels, reductions = model.feature_info.channels(), model.feature_info.reduction()
    assert len(channels) == 4
    with torch.no_grad():
        outs = model(torch.randn(1, 3, SIZE, SIZE))
    assert [o.shape[1] for o in outs] == channels
    assert [SIZE // o.shape[-1] for o in outs] == reductions

    full = timm.create_model(name, pretrained=False).eval()
    if not hasattr(full, 'forward_intermediates'):
        pytest.skip('no forward_intermediates')
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        last, inter = full.forward_intermediates(x)
        assert [t.shape[1] for t in inter] == channels
        torch.testing.assert_close(last, full.forward_features(x))


# RepLKNet's merged form is scripted through the same static branch as its training form (CI time).
@pytest.mark.slow
@pytest.mark.parametrize('name, deploy', [('replknet_31b', False), ('repnext_m0', False), ('repnext_m0', True),
                                          ('unireplknet_a', False), ('unireplknet_a', True)])
def test_torchscript(name, deploy):
    """timm's test_model_forward_torchscript (set_scriptable), also on the merged form; output equals eager."""
    with timm.layers.set_scriptable(True):
        model = timm.create_model(name, pretrained=False).eval()
    if deploy:
        model.switch_to_deploy()
    x = torch.randn(1, 3, SIZE, SIZE)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), rtol=1e-4, atol=1e-4)


def _fx_model(model, train: bool):
    """timm's _create_fx_model: torchvision's feature extractor with timm's leaf modules / functions."""
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names
    kwargs = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions(),
                  param_shapes_constant=True)
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=kwargs)
    return create_feature_extractor(model, train_return_nodes=[train_nodes[-1]],
                                    eval_return_nodes=[eval_nodes[-1]], tracer_kwargs=kwargs)


@pytest.mark.slow
@pytest.mark.parametrize('name', SMALLEST)
def test_fx_forward_equals_eager_and_backward_reaches_every_parameter(name):
    model = timm.create_model(name, pretrained=False).eval()
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.inference_mode():
        expected = model(x)
        got = torch.cat(tuple(_fx_model(model, train=False)(x).values()))
    assert torch.equal(got, expected)

    model = timm.create_model(name, pretrained=False, num_classes=42).train()
    fx = _fx_model(model, train=True)
    out = torch.cat(tuple(fx(torch.randn(2, 3, SIZE, SIZE)).values()))
    assert out.shape[-1] == 42
    out.mean().backward()
    missing = [n for n, p in fx.named_parameters() if p.grad is None]
    assert not missing, missing[:5]


@pytest.mark.parametrize('name', SMALLEST)
def test_group_matcher_orders_every_parameter_and_grad_checkpointing_reaches_every_unit(name):
    """timm's layer-decay helpers group every parameter, stem first and head last, in both families."""
    from timm.models import group_parameters
    with torch.device('meta'):
        model = timm.create_model(name, pretrained=False)
    all_names = sorted(n for n, _ in model.named_parameters())
    for coarse in (False, True):
        groups = group_parameters(model, model.group_matcher(coarse=coarse))
        order = sorted(groups)
        assert sorted(n for g in groups.values() for n in g) == all_names
        stem = model.pretrained_cfg['first_conv'].split('.')[0] + '.'
        if stem == 'downsample_layers.':  # UniRepLKNet's stem is its first downsample layer
            stem = 'downsample_layers.0.'
        assert all(n.startswith(stem) for n in groups[order[0]])
        assert any(n.startswith('head') for n in groups[order[-1]])
        assert len(order) > (5 if coarse else 10)
    model.set_grad_checkpointing(True)
    units = [m for m in model.modules() if isinstance(getattr(m, 'with_cp', None), bool)]
    assert model.with_cp and len(units) > 4 and all(m.with_cp for m in units)
