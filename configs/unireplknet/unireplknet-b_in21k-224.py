# UniRepLKNet-B ImageNet-22K pretraining at 224 px (21841 classes). The ImageNet-22K data pipeline is not set here: this file describes the released model; evaluation needs your 22K val set.
# Upstream: no accuracy published; released weights `unireplknet-b_in21k-224` (checkpoints.yaml, file unireplknet_b_in22k_pretrain.pth).
# Recipe: NOT yet transcribed from upstream Image/README.md (written against the deadline); the
# schedule below is the RepLKNet one this file inherits. Check Image/README.md before training.
# Evaluate the released weights:
#   python tools/test.py configs/unireplknet/unireplknet-b_in21k-224.py CKPT
_base_ = ['../replknet/replknet-31b_32xb64_in1k-224.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmlk.UniRepLKNet',
        arch='b',
        out_indices=(),
        num_classes=21841,
        drop_path_rate=0.0,
        init_cfg=None))
