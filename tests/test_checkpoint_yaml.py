"""checkpoints.yaml: schema, unique names, every config exists, download facts are consistent."""
import os.path as osp
import re
from urllib.parse import urlparse

import pytest
import yaml

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
FORMATS = {'replknet-official', 'repnext-official', 'unireplknet-official', 'timm-train', 'repnext-torchscript', 'mmpretrain', 'mmseg0.x',
           'mmdet2.x', 'coreml'}
TASKS = {'classification', 'segmentation', 'detection', 'instance-segmentation'}
FIELDS = ('name', 'arch', 'variant', 'task', 'dataset', 'pretraining', 'resolution', 'mean', 'std', 'num_classes',
          'metric', 'config', 'format', 'form', 'file_name', 'download', 'sha256', 'source')


def _entries():
    with open(osp.join(REPO, 'checkpoints.yaml'), encoding='utf-8') as f:
        data = yaml.safe_load(f)
    assert data['version'] == 1
    return data['checkpoints']


ENTRIES = _entries()


def test_names_unique_and_lowercase():
    names = [e['name'] for e in ENTRIES]
    assert len(names) == len(set(names)), [n for n in names if names.count(n) > 1]
    assert all(re.fullmatch(r'[a-z0-9][a-z0-9_.-]*', n) for n in names), names


def test_covers_every_release():
    """One entry per released file (REFERENCE sections 1-3 and the upstream READMEs)."""
    by = {}
    for e in ENTRIES:
        by.setdefault((e['arch'], e['format']), []).append(e)
    assert len(by[('replknet', 'replknet-official')]) == 9  # 1K 224/384, 22K 31B/31L, 22K->1K x3, MegData73M x2
    assert len(by[('replknet', 'mmpretrain')]) == 6
    assert len(by[('replknet', 'mmseg0.x')]) == 5 and len(by[('replknet', 'mmdet2.x')]) == 5
    assert len(by[('repnext', 'repnext-official')]) == 6 and len(by[('repnext', 'repnext-torchscript')]) == 6
    assert len(by[('repnext', 'mmdet2.x')]) == 3 and len(by[('repnext', 'mmseg0.x')]) == 3
    # UniRepLKNet: 1K 224 A-S (6), 22K S/B/L/XL (4), 22K->1K 384 S/B/L/XL (4); COCO Cascade Mask R-CNN 3x (6);
    # ADE20K UperNet 160k with a download location (5: S-22K 640 and XL-22K 640 are 'TBA' upstream)
    assert len(by[('unireplknet', 'unireplknet-official')]) == 14
    assert len(by[('unireplknet', 'mmdet2.x')]) == 6 and len(by[('unireplknet', 'mmseg0.x')]) == 5
    # StarNet-recipe releases (timm train.py .pth.tar), M0-M2, plain and distilled
    starnet = by[('repnext', 'timm-train')]
    assert sorted(e['file_name'] for e in starnet) == sorted(
        f'repnext_m{i}_sz224_4xbs{b}_ep300{s}.pth.tar' for i in range(3) for b, s in ((512, ''), (256, '_distill')))


@pytest.mark.parametrize('entry', ENTRIES, ids=[e['name'] for e in ENTRIES])
def test_schema(entry):
    assert set(FIELDS) <= set(entry), set(FIELDS) - set(entry)
    assert entry['arch'] in ('replknet', 'repnext', 'unireplknet')
    assert entry['task'] in TASKS
    assert entry['format'] in FORMATS
    assert entry['form'] in ('train', 'merged')
    assert entry['resolution'] is None or isinstance(entry['resolution'], int)
    assert entry['num_classes'] is None or isinstance(entry['num_classes'], int)
    for key in ('mean', 'std'):
        assert len(entry[key]) == 3 and all(isinstance(x, (int, float)) and x > 0 for x in entry[key])
    assert entry['metric'] is None or (isinstance(entry['metric'], dict) and all(
        isinstance(v, (int, float)) and 0 < v < 100 for v in entry['metric'].values()))
    sha = entry['sha256']
    assert sha is None or re.fullmatch(r'[0-9a-f]{8}|[0-9a-f]{64}', sha), sha
    dl = entry['download']
    assert set(dl) == {'github_release', 'google_drive_id', 'baidu', 'openmmlab', 'huggingface'}
    assert any(dl.values()), 'every entry needs at least one download location'
    if dl['google_drive_id']:
        assert re.fullmatch(r'[A-Za-z0-9_-]{25,40}', dl['google_drive_id'])
    if dl['baidu']:
        assert dl['baidu']['url'].startswith('https://pan.baidu.com/s/') and dl['baidu']['code']
    for key in ('github_release', 'openmmlab', 'huggingface'):
        if dl[key]:
            assert dl[key].startswith('https://')
            if entry['file_name']:
                assert osp.basename(urlparse(dl[key]).path) == entry['file_name']
    if dl['openmmlab']:
        # OpenMMLab file names end in the first 8 hex digits of the file's sha256.
        assert sha and entry['file_name'].endswith(f'-{sha[:8]}.pth')
    if entry['format'] == 'repnext-torchscript':
        assert entry['form'] == 'merged'
    # which weights of a timm train-script file (state_dict / state_dict_ema) load by default
    assert (entry.get('weights') in ('model', 'ema')) == (entry['format'] == 'timm-train')
    if entry['mean'] == [127.5, 127.5, 127.5]:
        assert entry['variant'] == 'XL'  # only RepLKNet-XL uses mean = std = 0.5


@pytest.mark.parametrize('entry', ENTRIES, ids=[e['name'] for e in ENTRIES])
def test_config_exists(entry):
    cfg = entry['config']
    assert isinstance(cfg, str) and cfg.startswith('configs/') and cfg.endswith('.py'), cfg
    assert '*' not in cfg, f'{entry["name"]}: unresolved config pattern {cfg}'
    assert osp.isfile(osp.join(REPO, cfg)), f'{entry["name"]}: config {cfg} does not exist'


def test_registry_module_reads_the_same_table():
    from mmlk.checkpoint.catalog import cache_file_name, get_entry, load_registry
    table = load_registry(osp.join(REPO, 'checkpoints.yaml'))
    assert sorted(table) == sorted(e['name'] for e in ENTRIES)
    e = get_entry('RepLKNet-31B_In1k-224')  # case-insensitive
    assert e is not None and e['download']['google_drive_id'] == '1azQUiCxK9feYVkkrPqwVPBtNsTzDrX7S'
    assert cache_file_name(get_entry('repnext-m3_in1k')) == 'repnext_m3_distill_300e.pth'


def test_converted_copies_point_at_their_original():
    names = {e['name']: e for e in ENTRIES}
    copies = [e for e in ENTRIES if e.get('converted_from')]
    assert len(copies) == 6
    for e in copies:
        orig = names[e['converted_from']]
        assert (orig['variant'], orig['resolution'], orig['pretraining']) == (e['variant'], e['resolution'],
                                                                            e['pretraining'])
        assert orig['download']['google_drive_id'] in e['notes']


def test_every_checkpoint_named_in_configs_exists():
    """Configs refer to released weights by name (init_cfg / load_from): each name must be in the table."""
    import glob
    names = {e['name'] for e in ENTRIES}
    found = []
    for path in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True):
        text = open(path, encoding='utf-8').read()
        for m in re.finditer(r"""(?:checkpoint|load_from)\s*=\s*['"]([^'"]+)['"]""", text):
            ref = m.group(1)
            if '/' in ref or ref.endswith(('.pth', '.pt')):
                continue  # a path or URL, not a name
            found.append(ref)
            assert ref.lower() in names, f'{osp.relpath(path, REPO)} names unknown checkpoint {ref!r}'
    assert found, 'expected the downstream configs to name their ImageNet weights'


def test_unireplknet_huggingface_urls():
    """Every UniRepLKNet Hub URL is a direct resolve URL of the official repo ending in the entry's file name."""
    prefix = 'https://huggingface.co/DingXiaoH/UniRepLKNet/resolve/main/'
    uni = [e for e in ENTRIES if e['arch'] == 'unireplknet']
    hf = [e for e in uni if e['download']['huggingface']]
    assert len(hf) == 14  # the official huggingface_file_names table
    for e in hf:
        url = e['download']['huggingface']
        assert url.startswith(prefix), url
        assert e['file_name'] and url == prefix + e['file_name'], (url, e['file_name'])
    for e in ENTRIES:
        url = e['download']['huggingface']
        assert url is None or url.startswith('https://huggingface.co/'), url


@pytest.mark.parametrize('family', ['replknet', 'repnext', 'unireplknet'])
def test_timm_tags_name_released_classifiers(family):
    """Every timm tag with weights has exactly one entry, of the matching variant and class count (every
    family's timm map is read from this file); timm's tags without weights are the RepNeXt "E" forms only."""
    timm = pytest.importorskip('timm')
    import torch

    import mmlk  # noqa: F401  (registers the timm names)
    from mmlk.models.timm_adapter import timm_checkpoints
    table = timm_checkpoints(family)
    tags = sorted(n for n in timm.list_models(f'{family}_*', include_tags=True) if not re.search(r'_m\de$', n))
    assert sorted(table) == tags
    by_name = {e['name']: e for e in ENTRIES}
    for tag, name in table.items():
        entry = by_name[name]
        assert entry['arch'] == family and entry['task'] == 'classification'
        assert tag.split('.')[0] == f'{family}_{entry["variant"].lower()}'
        with torch.device('meta'):
            model = timm.create_model(tag)
        assert model.num_classes == entry['num_classes']


def test_every_format_is_one_the_registered_families_or_the_generic_layer_know():
    """What each ``format`` means comes from the model side: generic formats plus each family's ``formats``."""
    import mmlk.models  # noqa: F401  (the families register their key codecs)
    from mmlk.models.weights import known_formats
    assert set(known_formats()) == FORMATS
    assert all(isinstance(text, str) and text for text in known_formats().values())


def test_the_checkpoint_file_layer_names_no_family_and_imports_no_model():
    """mmlk/checkpoint (catalog, download, reading, containers) knows no model: no family's name in its code
    (docstrings and comments included) and no import of mmlk.models, direct or lazy."""
    import ast
    import glob
    from mmlk.models import FAMILIES
    names = {fam.family for fam in FAMILIES} | {fam.display_name.lower() for fam in FAMILIES}
    for path in sorted(glob.glob(osp.join(REPO, 'mmlk', 'checkpoint', '*.py'))):
        with open(path, encoding='utf-8') as f:
            text = f.read()
        found = sorted(n for n in names if n in text.lower())
        assert not found, f'{osp.relpath(path, REPO)} names {found}'
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom):
                mod = ('.' * node.level) + (node.module or '')
                assert not (mod.startswith('mmlk.models') or mod.startswith('..models')), (path, mod)
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith('mmlk.models') for a in node.names), path
