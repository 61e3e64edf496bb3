"""OpenMMLab model-index metafiles generated from ``checkpoints.yaml`` (what ``mim search mmlk`` reads).

``checkpoints.yaml`` is the one hand-written table of released weights. The metafiles
(``configs/<family>/metafile.yml``, listed by ``model-index.yml``) are derived from it by
``python tools/misc/generate_metafiles.py`` and checked against it by the test suite, so the two never
disagree.
"""
import os.path as osp
from typing import Dict, List, Optional

import yaml

def _collection(name: str, architecture: List[str], paper: str, code: str) -> dict:
    """One model-index collection (mim prints a Title/URL mapping as its key names, so URLs stay plain)."""
    return dict(Name=name, Metadata=dict(Architecture=architecture), Paper=paper, Code=code)


#: One model-index collection per architecture family (mim's ``--model`` filter matches these names).
COLLECTIONS: Dict[str, dict] = {
    'replknet': _collection('RepLKNet', ['Large-kernel depthwise convolution', 'Structural re-parameterisation',
                                         'Batch normalisation'],
                            'https://arxiv.org/abs/2203.06717', 'https://github.com/DingXiaoH/RepLKNet-pytorch'),
    'repnext': _collection('RepNeXt', ['Multi-scale depthwise convolution', 'Structural re-parameterisation',
                                       'Batch normalisation'],
                           'https://arxiv.org/abs/2406.16004', 'https://github.com/suous/RepNeXt'),
    'unireplknet': _collection('UniRepLKNet', ['Dilated Reparam Block', 'Large-kernel depthwise convolution',
                                               'Structural re-parameterisation', 'Squeeze-and-excitation',
                                               'Global response normalisation', 'Batch normalisation'],
                               'https://arxiv.org/abs/2311.15599', 'https://github.com/AILab-CVC/UniRepLKNet'),
}

# checkpoints.yaml task -> the task names OpenMMLab metafiles use.
_TASKS = {'classification': 'Image Classification', 'segmentation': 'Semantic Segmentation',
          'detection': 'Object Detection', 'instance-segmentation': 'Instance Segmentation'}
# checkpoints.yaml metric keys -> OpenMMLab metric names.
_METRICS = {'top1': 'Top 1 Accuracy', 'top5': 'Top 5 Accuracy', 'mIoU_ss': 'mIoU', 'mIoU_ms': 'mIoU(ms+flip)',
            'box_AP': 'box AP', 'mask_AP': 'mask AP'}

HEADER = ('# Generated from checkpoints.yaml by tools/misc/generate_metafiles.py: do not edit by hand\n'
          '# (edit checkpoints.yaml and rerun the script; tests/test_packaging.py checks they agree).\n')


def weights_location(entry: dict) -> Optional[str]:
    """The best place to get a checkpoint: a direct download where one exists, else the manual source."""
    dl = entry.get('download') or {}
    for key in ('github_release', 'huggingface', 'openmmlab'):
        if dl.get(key):
            return dl[key]
    if dl.get('google_drive_id'):
        return f'https://drive.google.com/file/d/{dl["google_drive_id"]}'
    baidu = dl.get('baidu')
    if isinstance(baidu, dict) and baidu.get('url'):
        return baidu['url']
    return entry.get('source')


def model_record(entry: dict) -> dict:
    """One metafile ``Models`` entry for a ``checkpoints.yaml`` entry."""
    metadata = {'Training Data': [d for d in (entry.get('pretraining'), entry.get('dataset')) if d],
                'Variant': str(entry.get('variant')), 'Form': entry.get('form'), 'Format': entry.get('format')}
    if entry.get('resolution'):
        metadata['Resolution'] = entry['resolution']
    record = {'Name': entry['name'], 'In Collection': COLLECTIONS[entry['arch']]['Name'],
              'Config': entry['config'], 'Metadata': metadata}
    metric = entry.get('metric') or {}
    if metric:
        record['Results'] = [{'Task': _TASKS.get(entry['task'], entry['task']), 'Dataset': entry['dataset'],
                              'Metrics': {_METRICS.get(k, k): v for k, v in metric.items()}}]
    weights = weights_location(entry)
    if weights:
        record['Weights'] = weights
    return record


def build_metafiles(entries: List[dict]) -> Dict[str, dict]:
    """``{'configs/<family>/metafile.yml': metafile}`` for every family in ``entries``."""
    files: Dict[str, dict] = {}
    for entry in entries:
        if entry['arch'] not in COLLECTIONS:
            raise ValueError(f'checkpoints.yaml entry {entry["name"]}: arch {entry["arch"]!r} has no collection in '
                             f'mmlk.utils.metafile.COLLECTIONS ({sorted(COLLECTIONS)}); add one there')
        if not entry.get('config'):
            raise ValueError(f'checkpoints.yaml entry {entry["name"]} has no config; mim needs one per model')
        path = f'configs/{entry["arch"]}/metafile.yml'
        meta = files.setdefault(path, {'Collections': [COLLECTIONS[entry['arch']]], 'Models': []})
        meta['Models'].append(model_record(entry))
    return files


def build_model_index(metafiles: Dict[str, dict]) -> dict:
    return {'Import': sorted(metafiles)}


def dump(data: dict) -> str:
    return HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)


def generated_files(repo_root: str) -> Dict[str, str]:
    """Relative path -> text of every generated file (the metafiles and ``model-index.yml``)."""
    with open(osp.join(repo_root, 'checkpoints.yaml')) as f:
        entries = yaml.safe_load(f)['checkpoints']
    metafiles = build_metafiles(entries)
    out = {path: dump(meta) for path, meta in metafiles.items()}
    out['model-index.yml'] = dump(build_model_index(metafiles))
    return out
