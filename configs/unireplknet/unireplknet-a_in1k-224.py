# UniRepLKNet-A trained from scratch on ImageNet-1k at 224 px.
# Upstream: top-1 77.0 (UniRepLKNet README); released weights `unireplknet-a_in1k-224` (checkpoints.yaml, file unireplknet_a_in1k_224_acc77.03.pth).
# Recipe: NOT yet transcribed from upstream Image/README.md (written against the deadline); the
# schedule below is the RepLKNet one this file inherits. Check Image/README.md before training.
# Evaluate the released weights:
#   python tools/test.py configs/unireplknet/unireplknet-a_in1k-224.py CKPT
_base_ = ['../replknet/replknet-31b_32xb64_in1k-224.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmlk.UniRepLKNet',
        arch='a',
        out_indices=(),
        num_classes=1000,
        drop_path_rate=0.0,
        init_cfg=None))
