"""``import mmlk`` reads a host package's config index once per process (mmlk.utils.config_index)."""
import os
import os.path as osp

import pytest
import yaml

from _helpers import REPO

DET_CONFIG = osp.join(REPO, 'configs', 'replknet',
                      'cascade-mask-rcnn_replknet-31b_in1k-pre_fpn_4conv1fc-giou_32xb1-ms-crop-3x_coco.py')


def _fake_package(root, models):
    """A package directory with `.mim/model-index.yml` importing one metafile that lists ``models``."""
    mim = root / '.mim'
    (mim / 'configs' / 'net').mkdir(parents=True, exist_ok=True)
    (mim / 'configs' / 'net' / 'metafile.yml').write_text(yaml.safe_dump({'Models': models}))
    (mim / 'model-index.yml').write_text(yaml.safe_dump({'Import': ['configs/net/metafile.yml']}))
    return str(root)


def test_import_mmlk_installs_the_index_and_configs_load_as_without_it():
    import mmlk  # noqa: F401
    from mmengine.config import Config
    from mmengine.config import utils

    from mmlk.utils.config_index import cfg_metainfo
    assert utils._get_cfg_metainfo is cfg_metainfo
    with_index = Config.fromfile(DET_CONFIG).to_dict()
    utils._get_cfg_metainfo = utils._mmlk_uncached_cfg_metainfo
    try:
        without = Config.fromfile(DET_CONFIG).to_dict()
    finally:
        utils._get_cfg_metainfo = cfg_metainfo
    assert with_index == without


def test_answers_and_errors_equal_mmengines_for_a_real_host_package():
    import mmlk  # noqa: F401
    from mmengine.config import utils
    from mmengine.utils import get_installed_path

    from mmlk.utils.config_index import cfg_metainfo
    mmdet = get_installed_path('mmdet')
    name = 'mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'  # the form of the metafiles' keys
    assert cfg_metainfo(mmdet, name) == utils._mmlk_uncached_cfg_metainfo(mmdet, name)
    assert cfg_metainfo(mmdet, name)['Config'].endswith(name)
    errors = []
    for fn in (cfg_metainfo, utils._mmlk_uncached_cfg_metainfo):
        with pytest.raises(ValueError) as info:
            fn(mmdet, '_base_/models/mask-rcnn_r50_fpn')  # a base: in no metafile, mmengine then takes the path
        errors.append(str(info.value))
    assert errors[0] == errors[1]


def test_index_is_re_read_when_the_package_changes(tmp_path):
    from mmlk.utils.config_index import cfg_metainfo
    pkg = _fake_package(tmp_path, [{'Name': 'a', 'Config': 'configs/net/net-a.py'},
                                   {'Name': 'a2', 'Config': 'configs/net/net-a.py', 'Weights': 'second'}])
    # a config listed twice: the first entry is the one returned (mmengine's rule)
    assert cfg_metainfo(pkg, 'net/net-a.py') == {'Name': 'a', 'Config': 'configs/net/net-a.py'}
    with pytest.raises(ValueError, match='but got net/net-b.py'):
        cfg_metainfo(pkg, 'net/net-b.py')
    # a re-installed package (a new model-index.yml) is read again; an entry without Config is warned about
    _fake_package(tmp_path, [{'Name': 'b', 'Config': 'configs/net/net-b.py'}, {'Name': 'no-config'}])
    index = osp.join(pkg, '.mim', 'model-index.yml')
    st = os.stat(index)
    os.utime(index, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.warns(UserWarning, match='There is not `Config` define'):
        assert cfg_metainfo(pkg, 'net/net-b.py')['Name'] == 'b'
    with pytest.raises(ValueError, match='but got net/net-a.py'):
        cfg_metainfo(pkg, 'net/net-a.py')
    with pytest.raises(FileNotFoundError):
        cfg_metainfo(str(tmp_path / 'not-a-package'), 'net-a')
