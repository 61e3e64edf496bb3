"""mmlk.checkpoint: every released format loads strictly, downloads are verified, unsafe files are refused.

Fixture files are built from the documented key layouts (tests/_checkpoint_fixtures.py), never from
mmlk's own modules, and served by a local HTTP server on 127.0.0.1: no test touches the internet.
"""
import logging
import os
import os.path as osp
import pickle
import zipfile

import pytest
import torch

import _checkpoint_fixtures as F
from mmlk.checkpoint import CheckpointError, resolve_checkpoint, sha256sum
from mmlk.models.weights import load_pretrained, read_state_dict
from mmlk.models.weights.keys import describe_arch
from mmlk.models.weights.loading import _mismatch_message
from mmlk.checkpoint.reader import read_torchscript_tensors
from mmlk.models.replknet.model import RepLKNet
from mmlk.models.repnext.model import RepNeXt


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def log():
    logger = logging.getLogger('mmlk-test-checkpoint')
    logger.setLevel(logging.INFO)
    handler = ListHandler()
    logger.addHandler(handler)
    logger.propagate = False
    yield logger, handler.messages
    logger.removeHandler(handler)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / 'cache'
    monkeypatch.setenv('MMLK_CACHE_DIR', str(d))
    monkeypatch.delenv('MMLK_OFFLINE', raising=False)
    return d


def save(obj, path):
    torch.save(obj, str(path))
    return str(path)


def assert_loaded(model, expected, rename=lambda k: k):
    sd = model.state_dict()
    for k, v in expected.items():
        assert torch.equal(sd[rename(k)], v), k


# Loading does not depend on the depthwise-conv route: the plain torch one keeps these tests quick.
def lk(**kw):
    return RepLKNet(arch=dict(F.TINY_LK_ARCH), lk_impl='torch', **kw)


def nx(**kw):
    return RepNeXt(arch=dict(F.TINY_NX_ARCH), lk_impl='torch', **kw)


X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------------------------------------------ fixtures
def test_fixtures_follow_documented_counts():
    """The fixture builders reproduce REFERENCE's entry and parameter counts for the real variants."""
    b = F.replknet_official((128, 256, 512, 1024), (2, 2, 18, 2), (31, 29, 27, 13), 5, 1, 4, 1000, device='meta')
    xl = F.replknet_official((256, 512, 1024, 2048), (2, 2, 18, 2), (27, 27, 27, 13), None, 1.5, 4, 1000,
                             device='meta')
    params = lambda sd: sum(v.numel() for k, v in sd.items() if 'running' not in k and 'num_batches' not in k)
    assert (len(b), params(b)) == (1171, 79864168)
    assert (len(xl), params(xl)) == (1027, 335435752)
    m0 = F.repnext_official((40, 80, 160, 320), (2, 2, 9, 1), 1000, device='meta')
    assert abs(params(m0) / 1e6 - 2.72) < 0.01
    assert describe_arch(b)['variant'] == '31B' and describe_arch(xl)['variant'] == 'XL'
    assert describe_arch(m0)['variant'] == 'M0'


# ------------------------------------------------------------------------------------------ RepLKNet formats
@pytest.mark.parametrize('wrap', ['flat', 'model', 'state_dict', 'legacy'])
def test_replknet_official_into_classifier(tmp_path, wrap, log):
    sd = F.replknet_official()
    path = str(tmp_path / 'RepLKNet-tiny.pth')
    if wrap == 'legacy':  # torch < 1.6 pickle format (no zip container)
        torch.save(sd, path, _use_new_zipfile_serialization=False)
    else:
        save(sd if wrap == 'flat' else {wrap: sd}, path)
    model = lk(num_classes=10)
    report = load_pretrained(model, path, logger=log[0])
    assert_loaded(model, sd)
    assert report['unexpected'] == [] and report['format'] == 'replknet-official'
    assert len(report['matched']) == len(sd)
    assert any('matched' in m for m in log[1])


def test_replknet_backbone_drops_classifier_with_one_line(tmp_path, log):
    sd = F.replknet_official(num_classes=10)
    model = lk(num_classes=0, out_indices=(0, 1, 2, 3))
    report = load_pretrained(model, save(sd, tmp_path / 'cls.pth'), logger=log[0])
    assert sorted(report['dropped']) == sorted(k for k in sd if k.startswith(('norm.', 'head.')))
    assert_loaded(model, {k: v for k, v in sd.items() if not k.startswith(('norm.', 'head.'))})
    dropped_lines = [m for m in log[1] if 'dropped the classifier' in m]
    assert len(dropped_lines) == 1 and 'head.weight (10, 64)' in dropped_lines[0]


def test_mmpretrain_classifier_checkpoint(tmp_path):
    sd = F.replknet_official()
    path = save(F.to_mmpretrain(sd), tmp_path / 'replknet_mmpretrain.pth')
    state, _, fmt = read_state_dict(path)
    assert fmt == 'mmpretrain' and sorted(state) == sorted(sd)  # stages.3.norm -> norm, head.fc -> head
    model = lk(num_classes=10)
    load_pretrained(model, path)
    assert_loaded(model, sd)


def test_downstream_mmseg_file_into_backbone(tmp_path, log):
    bb = F.replknet_official(num_classes=0, stage_norms=True)
    path = save(F.to_mmseg0x(bb), tmp_path / 'upernet.pth')
    model = lk(num_classes=0, norm_intermediate_features=True)
    report = load_pretrained(model, path, logger=log[0])
    assert_loaded(model, bb)
    assert report['format'] == 'mmseg0.x'
    assert any('decode_head' in m and 'auxiliary_head' in m for m in log[1])
    # The explicit mmengine-style prefix gives the same result.
    model2 = lk(num_classes=0, norm_intermediate_features=True)
    load_pretrained(model2, path, prefix='backbone')
    assert_loaded(model2, bb)


def test_classification_file_into_intermediate_norm_backbone(tmp_path):
    """XL-style downstream backbones add per-stage norms the ImageNet files do not have: left initialised."""
    sd = F.replknet_official(num_classes=10)
    model = lk(num_classes=0, norm_intermediate_features=True)
    report = load_pretrained(model, save(sd, tmp_path / 'cls.pth'))
    fresh = [k for k in report['missing'] if not k.endswith('num_batches_tracked')]
    assert fresh and all(k.startswith('stages.') and '.norm.' in k for k in fresh)


XL_LIKE = dict(channels=(16, 32, 32, 64), layers=(1, 1, 1, 1), kernels=(9, 7, 7, 5), small_kernel=None, dw_ratio=1.5)


@pytest.mark.parametrize('xl_like', [False, True], ids=['31B-like', 'XL-like'])
def test_train_form_file_into_merged_replknet(tmp_path, log, xl_like):
    sd = F.replknet_official(num_classes=10, **(XL_LIKE if xl_like else {}))
    arch = dict(F.TINY_LK_ARCH, small_kernel=None, dw_ratio=1.5) if xl_like else dict(F.TINY_LK_ARCH)
    lk = lambda **kw: RepLKNet(arch=dict(arch), lk_impl='torch', **kw)  # noqa: E731
    path = save(sd, tmp_path / 'train.pth')
    ref = lk(num_classes=10)
    ref.load_state_dict(sd)
    ref.eval()
    ref.switch_to_deploy()
    deployed = lk(num_classes=10, deploy=True).eval()
    report = load_pretrained(deployed, path, logger=log[0])
    assert report['merged'] and any('merged it on the fly' in m for m in log[1])
    with torch.no_grad():
        out, expect = deployed(X), ref(X)
    for a, b in zip(out, expect):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # And against the unmerged model: merging is exact up to rounding.
    train = lk(num_classes=10).eval()
    train.load_state_dict(sd)
    with torch.no_grad():
        torch.testing.assert_close(deployed(X)[-1], train(X)[-1], rtol=1e-4, atol=1e-4)


def test_merged_file_into_train_model_is_refused(tmp_path):
    m = lk(num_classes=10).eval()
    m.load_state_dict(F.replknet_official())
    m.switch_to_deploy()
    path = save(m.state_dict(), tmp_path / 'merged.pth')
    with pytest.raises(CheckpointError, match='cannot be split back'):
        load_pretrained(lk(num_classes=10), path)
    # ... while it loads into a merged model directly.
    target = lk(num_classes=10, deploy=True)
    load_pretrained(target, path)
    assert_loaded(target, m.state_dict())


def test_wrong_variant_message_names_the_file_arch(tmp_path):
    sd = F.replknet_official(channels=(16, 32, 64, 128))
    with pytest.raises(CheckpointError) as exc:
        load_pretrained(lk(num_classes=10), save(sd, tmp_path / 'other.pth'))
    msg = str(exc.value)
    assert 'channels (16, 32, 64, 128)' in msg and 'channels (16, 32, 32, 64)' in msg
    assert 'Shape differences' in msg and len(msg) < 3000  # a diagnosis, not a wall of keys
    # With published shapes the message names the variant to build.
    src = F.replknet_official((192, 384, 768, 1536), (2, 2, 18, 2), (31, 29, 27, 13), 5, 1, 4, 1000, device='meta')
    tgt = F.replknet_official((128, 256, 512, 1024), (2, 2, 18, 2), (31, 29, 27, 13), 5, 1, 4, 1000, device='meta')
    msg = _mismatch_message(src, {k: v.shape for k, v in tgt.items()}, 'x')
    assert 'RepLKNet-31L' in msg and "arch='31L'" in msg and 'RepLKNet-31B' in msg


def test_wrong_family_and_missing_blocks_fail(tmp_path):
    with pytest.raises(CheckpointError, match='No key matched'):
        load_pretrained(lk(num_classes=0), save(F.repnext_official(), tmp_path / 'nx.pth'))
    sd = F.replknet_official(layers=(1, 1, 2, 1))  # an extra block pair in stage 2
    with pytest.raises(CheckpointError, match='Not in the model: stages.2.blocks.2'):
        load_pretrained(lk(num_classes=10), save(sd, tmp_path / 'deeper.pth'))
    sd = F.replknet_official()
    del sd['stages.1.blocks.1.pw1.conv.weight']
    with pytest.raises(CheckpointError, match='Missing in the file: stages.1.blocks.1.pw1.conv.weight'):
        load_pretrained(lk(num_classes=10), save(sd, tmp_path / 'holed.pth'))


def test_prefix_errors(tmp_path):
    path = save(F.replknet_official(), tmp_path / 'cls.pth')
    with pytest.raises(CheckpointError, match="no key starts with prefix 'backbone.'.*stem"):
        load_pretrained(lk(num_classes=10), path, prefix='backbone.')


# ------------------------------------------------------------------------------------------ RepNeXt formats
def test_repnext_official_pth_with_args_namespace(tmp_path, log):
    sd = F.repnext_official()
    path = save(F.deit_style(sd), tmp_path / 'repnext_tiny_distill_300e.pth')
    model = nx()
    report = load_pretrained(model, path, logger=log[0])
    assert report['format'] == 'repnext-official'
    assert_loaded(model, {k: v for k, v in sd.items() if not k.startswith('head.')})
    assert len(report['dropped_head']) == 14  # head and head_dist: BatchNorm1d (5 tensors) + Linear (2) each


def test_train_form_file_into_merged_repnext(tmp_path):
    sd = F.repnext_official(num_classes=0)
    path = save(sd, tmp_path / 'nx.pth')
    train = nx().eval()
    train.load_state_dict(sd)
    deployed = nx(deploy=True).eval()
    report = load_pretrained(deployed, path)
    assert report['merged']
    with torch.no_grad():
        for a, b in zip(deployed(X), train(X)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


class _Classifier(torch.nn.Module):
    """backbone + global pooling + RepNeXt head, keyed like an mmpretrain ImageClassifier."""

    def __init__(self, deploy):
        super().__init__()
        from mmlk.models.repnext.head import RepNeXtClsHead
        self.backbone = nx(deploy=deploy, out_indices=(3, ))
        self.head = RepNeXtClsHead(num_classes=10, in_channels=128, deploy=deploy)

    def forward(self, x):
        return self.head(self.backbone(x)[-1].mean((2, 3)))


def test_train_form_file_into_merged_classifier_merges_backbone_and_heads(tmp_path, log):
    sd = F.repnext_official(num_classes=10)
    path = save(F.deit_style(sd), tmp_path / 'nx_cls.pth')
    train = _Classifier(deploy=False).eval()
    load_pretrained(train, path)
    assert torch.equal(train.state_dict()['head.head_dist.linear.weight'], sd['head.head_dist.linear.weight'])
    deployed = _Classifier(deploy=True).eval()
    report = load_pretrained(deployed, path, logger=log[0])
    assert report['merged'] == ['backbone', 'head']
    with torch.no_grad():
        torch.testing.assert_close(deployed(X), train(X), rtol=1e-4, atol=1e-4)


def _fused_reference(sd):
    """Upstream's fused layout = mmlk's deploy form without block-norm folding (REFERENCE section 2)."""
    ref = nx(deploy=False, fold_block_norm=False).eval()
    ref.load_state_dict(sd)
    ref.switch_to_deploy()
    return ref


def test_repnext_fused_torchscript_read_without_running_code(tmp_path):
    sd = F.repnext_official(num_classes=0)
    ref = _fused_reference(sd)
    fused = ref.state_dict()
    # Key layout of upstream's fused model (ConvNorm -> conv, RepDWConv* -> one conv, block BN kept).
    assert 'stem.stem.0.weight' in fused and 'stages.0.blocks.0.token_mixer.conv_s.weight' in fused
    assert 'stages.0.blocks.0.norm.running_var' in fused and 'stages.0.blocks.0.token_mixer.conv_l.1.bias' in fused
    scripted = torch.jit.script(F.module_from_state(fused))
    path = str(tmp_path / 'repnext_tiny_distill_300e_fused.pt')
    scripted.save(path)
    tensors = read_torchscript_tensors(path)
    jit_sd = torch.jit.load(path).state_dict()
    assert list(tensors) == list(jit_sd) and all(torch.equal(tensors[k], jit_sd[k]) for k in jit_sd)
    model = nx(deploy=True, fold_block_norm=False).eval()
    report = load_pretrained(model, path)
    assert report['format'] == 'repnext-torchscript'
    with torch.no_grad():
        for a, b in zip(model(X), ref(X)):
            torch.testing.assert_close(a, b)
    # mmlk's default deploy form also folds the block norms: the loader folds them on the fly.
    folded = nx(deploy=True).eval()
    report = load_pretrained(folded, path)
    assert report['merged'] and not any('.norm.' in k for k in folded.state_dict() if '.blocks.' in k)
    with torch.no_grad():
        for a, b in zip(folded(X), ref(X)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_torchscript_with_foreign_globals_is_refused(tmp_path):
    """A data.pkl that asks for anything but tensors and module records is refused, and nothing runs."""
    marker = tmp_path / 'pwned'
    scripted = torch.jit.script(F.module_from_state({'w': torch.ones(2)}))
    good = str(tmp_path / 'good.pt')
    scripted.save(good)

    class Evil:
        def __reduce__(self):
            return (os.system, (f'touch {marker}', ))

    bad = str(tmp_path / 'bad.pt')
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, 'w') as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith('/data.pkl'):
                data = pickle.dumps({'w': Evil()}, protocol=2)
            zout.writestr(item, data)
    with pytest.raises(CheckpointError, match='posix.system|os.system|nt.system'):
        read_state_dict(bad)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ security
def test_weights_only_refusal_explains(tmp_path):
    marker = tmp_path / 'pwned'

    class Evil:
        def __reduce__(self):
            return (os.system, (f'touch {marker}', ))

    path = save({'state_dict': {'w': torch.ones(1)}, 'meta': {'hook': Evil()}}, tmp_path / 'evil.pth')
    with pytest.raises(CheckpointError) as exc:
        load_pretrained(lk(num_classes=10), path)
    msg = str(exc.value)
    assert 'weights_only=False' in msg and 'system' in msg and 'never does' in msg
    assert not marker.exists()


def test_corrupted_local_file_has_clear_error(tmp_path):
    path = save(F.replknet_official(), tmp_path / 'ok.pth')
    data = open(path, 'rb').read()
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='truncated'):
        load_pretrained(lk(num_classes=10), str(cut))


def test_coreml_and_unknown_names(cache):
    with pytest.raises(CheckpointError, match='Core ML'):
        resolve_checkpoint('repnext-m3_in1k-coreml')
    with pytest.raises(CheckpointError, match='Did you mean replknet-31b_in1k-224'):
        resolve_checkpoint('replknet-31b_in1k_224')


# ------------------------------------------------------------------------------------------ downloads
@pytest.fixture
def server():
    srv = F.FileServer(lifetime=90).start()
    yield srv
    srv.stop()


def test_download_by_name_verify_and_reuse_cache(tmp_path, monkeypatch, cache, server):
    sd = F.replknet_official()
    path = save(sd, tmp_path / 'src.pth')
    data = open(path, 'rb').read()
    server.files['/rel/tiny.pth'] = data
    F.write_registry(tmp_path, monkeypatch, [dict(name='tiny-lk', file_name='tiny.pth', sha256=sha256sum(path),
                                           download=dict(github_release=server.url + '/rel/tiny.pth'))])
    model = lk(num_classes=10)
    load_pretrained(model, 'tiny-lk')
    assert_loaded(model, sd)
    assert F.cache_files(cache) == ['tiny-lk/tiny.pth', 'tiny-lk/tiny.pth.sha256']
    n = len(server.requests)
    resolve_checkpoint('tiny-lk')  # served from the cache, hash re-checked
    assert len(server.requests) == n
    # A cached file that changed afterwards is refused and removed.
    with open(cache / 'tiny-lk' / 'tiny.pth', 'r+b') as f:
        f.seek(100)
        f.write(b'\x00\x01\x02')
    with pytest.raises(CheckpointError, match='sha256 mismatch'):
        resolve_checkpoint('tiny-lk')
    assert F.cache_files(cache) == []


def test_resume_interrupted_download(tmp_path, monkeypatch, cache, server):
    data = open(save(F.replknet_official(), tmp_path / 'src.pth'), 'rb').read()
    server.files['/tiny.pth'] = data
    server.cut['/tiny.pth'] = 5000
    F.write_registry(tmp_path, monkeypatch, [dict(name='tiny-lk', file_name='tiny.pth',
                                           download=dict(github_release=server.url + '/tiny.pth'))])
    with pytest.raises(CheckpointError, match='interrupted after 5000 of'):
        resolve_checkpoint('tiny-lk')
    assert F.cache_files(cache) == ['tiny-lk/tiny.pth.part'] and os.path.getsize(cache / 'tiny-lk/tiny.pth.part') == 5000
    path, _ = resolve_checkpoint('tiny-lk')
    assert server.requests[-1] == ('/tiny.pth', 'bytes=5000-')
    assert open(path, 'rb').read() == data
    # Without a registry hash the first download's hash is pinned next to the file.
    assert (cache / 'tiny-lk' / 'tiny.pth.sha256').read_text().strip() == sha256sum(path)


def test_hash_mismatch_leaves_nothing(tmp_path, monkeypatch, cache, server):
    server.files['/tiny.pth'] = open(save(F.replknet_official(), tmp_path / 'src.pth'), 'rb').read()
    F.write_registry(tmp_path, monkeypatch, [
        dict(name='bad-full', file_name='tiny.pth', sha256='0' * 64,
             download=dict(github_release=server.url + '/tiny.pth')),
        dict(name='bad-prefix', file_name='tiny.pth', sha256='deadbeef',
             download=dict(openmmlab=server.url + '/tiny.pth'))])
    for name in ('bad-full', 'bad-prefix'):
        with pytest.raises(CheckpointError, match='sha256 mismatch'):
            resolve_checkpoint(name)
        assert F.cache_files(cache) == []


@pytest.mark.parametrize('damage', ['truncated', 'corrupted'])
def test_damaged_file_without_hash_leaves_nothing(tmp_path, monkeypatch, cache, server, damage):
    data = bytearray(open(save(F.replknet_official(), tmp_path / 'src.pth'), 'rb').read())
    if damage == 'truncated':
        data = data[:len(data) * 2 // 3]  # the server itself has a short file: Content-Length agrees
    else:
        mid = len(data) // 2
        data[mid:mid + 16] = bytes(16)  # zeroed bytes inside a tensor record: caught by the zip CRC
    server.files['/tiny.pth'] = bytes(data)
    F.write_registry(tmp_path, monkeypatch, [dict(name='tiny-lk', file_name='tiny.pth',
                                           download=dict(github_release=server.url + '/tiny.pth'))])
    with pytest.raises(CheckpointError, match='truncated|corrupted|CRC'):
        resolve_checkpoint('tiny-lk')
    assert F.cache_files(cache) == []


def test_url_with_openmmlab_hash_prefix(tmp_path, cache, server):
    path = save(F.to_mmpretrain(F.replknet_official()), tmp_path / 'src.pth')
    good = f'/replknet-tiny_3rdparty_in1k_20221118-{sha256sum(path)[:8]}.pth'
    server.files[good] = open(path, 'rb').read()
    model = lk(num_classes=10)
    load_pretrained(model, server.url + good)
    assert [f for f in F.cache_files(cache) if not f.endswith('.sha256')] == [
        osp.relpath(resolve_checkpoint(server.url + good)[0], cache)]
    assert F.cache_files(cache)[0].startswith('url-127.0.0.1_') and F.cache_files(cache)[0].endswith(good)
    server.files['/replknet-tiny_20221118-00000000.pth'] = server.files[good]
    with pytest.raises(CheckpointError, match='sha256 mismatch'):
        resolve_checkpoint(server.url + '/replknet-tiny_20221118-00000000.pth')


def test_offline_and_browser_only_messages(tmp_path, monkeypatch, cache, server):
    port = server.httpd.server_address[1]
    server.stop()  # nothing listens any more: like being offline
    F.write_registry(tmp_path, monkeypatch, [
        dict(name='gh', file_name='gh.pth', download=dict(github_release=f'http://127.0.0.1:{port}/gh.pth',
                                                          google_drive_id='1azQUiCxK9feYVkkrPqwVPBtNsTzDrX7S')),
        dict(name='drive-only', download=dict(google_drive_id='1azQUiCxK9feYVkkrPqwVPBtNsTzDrX7S',
                                              baidu=dict(url='https://pan.baidu.com/s/1gspbbfqooMtegt_DO1TUeA?pwd=lknt',
                                                         code='lknt')))])
    with pytest.raises(CheckpointError) as exc:
        resolve_checkpoint('gh')
    msg = str(exc.value)
    assert 'offline' in msg and 'https://drive.google.com/file/d/1azQUiCxK9feYVkkrPqwVPBtNsTzDrX7S/view' in msg
    with pytest.raises(CheckpointError) as exc:
        resolve_checkpoint('drive-only')
    msg = str(exc.value)
    dest = cache / 'drive-only' / 'drive-only.pth'
    assert 'need a browser' in msg and 'extraction code lknt' in msg and str(dest) in msg
    assert F.cache_files(cache) == []
    # A file put there by hand is used.
    os.makedirs(dest.parent, exist_ok=True)
    save(F.replknet_official(), dest)
    model = lk(num_classes=10)
    load_pretrained(model, 'drive-only')


def test_html_instead_of_checkpoint(tmp_path, monkeypatch, cache, server):
    server.files['/uc'] = b'<!DOCTYPE html><html>Google Drive - virus scan warning</html>'
    server.content_type['/uc'] = 'text/html; charset=utf-8'
    F.write_registry(tmp_path, monkeypatch, [dict(name='gd', download=dict(github_release=server.url + '/uc'))])
    with pytest.raises(CheckpointError, match='HTML page'):
        resolve_checkpoint('gd')
    assert F.cache_files(cache) == []


def test_cli_download_and_list(tmp_path, monkeypatch, cache, server, capsys):
    from mmlk.__main__ import main
    path = save(F.replknet_official(), tmp_path / 'src.pth')
    server.files['/tiny.pth'] = open(path, 'rb').read()
    F.write_registry(tmp_path, monkeypatch, [dict(name='tiny-lk', file_name='tiny.pth', metric={'top1': 1.0},
                                           download=dict(github_release=server.url + '/tiny.pth'))])
    assert main(['list']) == 0
    assert 'tiny-lk' in capsys.readouterr().out
    assert main(['info', 'tiny-lk']) == 0
    assert 'github_release: ' + server.url + '/tiny.pth' in capsys.readouterr().out
    assert main(['download', 'tiny-lk', '--no-progress']) == 0
    assert str(cache / 'tiny-lk' / 'tiny.pth') in capsys.readouterr().out
    assert main(['download', 'no-such-name']) == 1
    assert 'no-such-name' in capsys.readouterr().err


def test_backbones_init_weights_use_names_and_prefix(tmp_path, monkeypatch, cache):
    """init_cfg=dict(type='Pretrained', ...) of both backbones goes through the registry and the strict loader."""
    F.write_registry(tmp_path, monkeypatch, [
        dict(name='lk-cls', file_name='lk.pth', download=dict(google_drive_id='1azQUiCxK9feYVkkrPqwVPBtNsTzDrX7S')),
        dict(name='nx-coco', arch='repnext', format='mmdet2.x', file_name='nx_coco.pth',
             download=dict(google_drive_id='1azQUiCxK9feYVkkrPqwVPBtNsTzDrX7S'))])
    os.makedirs(cache / 'lk-cls')
    os.makedirs(cache / 'nx-coco')
    lk_sd = F.replknet_official(num_classes=10)
    save(lk_sd, cache / 'lk-cls' / 'lk.pth')  # placed by hand, as the message for Drive-only files says
    nx_sd = F.repnext_official(num_classes=0)
    det_sd = {'backbone.' + k: v for k, v in nx_sd.items()}
    det_sd['neck.lateral_convs.0.conv.weight'] = torch.zeros(8, 16, 1, 1)
    det = {'meta': {'CLASSES': ('a', 'b')}, 'state_dict': det_sd}
    save(det, cache / 'nx-coco' / 'nx_coco.pth')
    model = lk(num_classes=10, init_cfg=dict(type='Pretrained', checkpoint='lk-cls'))
    model.init_weights()
    assert_loaded(model, lk_sd)
    model = nx(init_cfg=dict(type='Pretrained', checkpoint='nx-coco', prefix='backbone.'))
    model.init_weights()
    assert_loaded(model, nx_sd)
    bad = nx(init_cfg=dict(type='Pretrained', checkpoint='lk-cls'))
    with pytest.raises(CheckpointError, match='No key matched'):
        bad.init_weights()


def _resolve_in_child(name, queue):
    try:
        queue.put(resolve_checkpoint(name, progress=False)[0])
    except Exception as e:  # reported to the parent, which fails the test
        queue.put(f'error: {e}')


def test_concurrent_processes_download_once(tmp_path, monkeypatch, cache, server):
    """Every rank of a distributed job resolves the same name: one download, the others wait for it."""
    import multiprocessing as mp
    data = open(save(F.replknet_official(), tmp_path / 'src.pth'), 'rb').read()
    server.files['/tiny.pth'] = data
    server.slow['/tiny.pth'] = 1.0
    F.write_registry(tmp_path, monkeypatch, [dict(name='tiny-lk', file_name='tiny.pth',
                                           download=dict(github_release=server.url + '/tiny.pth'))])
    ctx = mp.get_context('fork')  # children inherit the imported modules: no re-import of torch
    queue = ctx.Queue()
    procs = [ctx.Process(target=_resolve_in_child, args=('tiny-lk', queue)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert results == [str(cache / 'tiny-lk' / 'tiny.pth')] * 3, results
    assert [r for r in server.requests if r[0] == '/tiny.pth'] == [('/tiny.pth', None)]
    assert open(cache / 'tiny-lk' / 'tiny.pth', 'rb').read() == data


def test_checkpoint_with_numpy_metadata_loads(tmp_path):
    """mmengine Runner checkpoints keep numpy arrays / scalars in meta and message_hub: allowed data."""
    import numpy as np
    sd = F.replknet_official(num_classes=10)
    ckpt = {'meta': {'epoch': 1, 'seed': np.int64(3)}, 'state_dict': {'backbone.' + k: v for k, v in sd.items()},
            'message_hub': {'runtime_info': {'lr': np.array([0.1, 0.2]), 'iter': np.float64(2.0)}}}
    path = save(ckpt, tmp_path / 'epoch_1.pth')
    model = lk(num_classes=0)
    load_pretrained(model, path)
    assert_loaded(model, {k: v for k, v in sd.items() if not k.startswith(('norm.', 'head.'))})


def test_fused_torchscript_into_deploy_classifier(tmp_path):
    """Upstream's fused file (backbone + one Linear ``head``) into mmlk's deploy-form classifier."""
    sd = F.repnext_official(num_classes=0)
    ref = _fused_reference(sd)
    gen = torch.Generator().manual_seed(5)
    fused = {**ref.state_dict(), 'head.weight': torch.randn(10, 128, generator=gen),
             'head.bias': torch.randn(10, generator=gen)}
    path = str(tmp_path / 'repnext_tiny_fused.pt')
    torch.jit.script(F.module_from_state(fused)).save(path)
    model = _Classifier(deploy=True).eval()
    load_pretrained(model, path)
    with torch.no_grad():
        expect = ref(X)[-1].mean((2, 3)) @ fused['head.weight'].t() + fused['head.bias']
        torch.testing.assert_close(model(X), expect, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------- a backbone inside a host model (issue #22.4)
class _Parent(torch.nn.Module):
    """What a host model looks like to mmengine's loader: ``backbone.`` plus a head."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.head = torch.nn.Linear(4, 3)


def _as_parent_state(backbone, head=None):
    sd = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    sd.update({f'head.{k}': v for k, v in (head or torch.nn.Linear(4, 3)).state_dict().items()})
    return sd


@pytest.mark.parametrize('case', ['other_family', 'other_variant', 'no_backbone_keys'])
def test_mmengine_non_strict_load_refuses_a_backbone_that_is_not_this_one(case):
    """mmengine's load_checkpoint / load_state_dict (what the hosts' tools/test.py use) is non-strict and would
    only warn; a backbone part of another family / variant, or none at all, raises mmlk's error naming both."""
    from mmengine.runner.checkpoint import load_state_dict
    model = _Parent(nx())
    if case == 'other_family':
        sd = _as_parent_state(lk())
    elif case == 'other_variant':
        sd = _as_parent_state(RepNeXt(arch=dict(embed_dims=[8, 16, 32, 64], depths=[1, 1, 2, 1], mlp_ratio=2),
                                      lk_impl='torch'))
    else:
        sd = {k: v for k, v in _as_parent_state(nx()).items() if not k.startswith('backbone.')}
    with pytest.raises(CheckpointError) as err:
        load_state_dict(model, sd, strict=False)
    msg = str(err.value)
    assert 'RepNeXt' in msg and "'backbone.'" in msg, msg
    if case == 'other_family':
        assert 'RepLKNet' in msg, msg
    if case == 'other_variant':
        assert 'Shape differences' in msg, msg


def test_mmengine_non_strict_load_keeps_fine_tuning_a_new_head():
    """A checkpoint that fits the backbone but not the head (another num_classes, or no head) loads as before."""
    from mmengine.runner.checkpoint import load_state_dict
    src = nx()
    model = _Parent(nx())
    for sd in (_as_parent_state(src, torch.nn.Linear(4, 7)),
               {k: v for k, v in _as_parent_state(src).items() if k.startswith('backbone.')}):
        load_state_dict(model, sd, strict=False)
        for k, v in src.state_dict().items():
            assert torch.equal(model.backbone.state_dict()[k], v), k
    # the backbone on its own (prefix '') keeps the plain torch behaviour
    nx().load_state_dict(src.state_dict())
