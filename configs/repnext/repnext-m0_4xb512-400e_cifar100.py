# RepNeXt-M0 on CIFAR-100, the 400-epoch schedule of upstream's compact-model experiment
# (suous/RepNeXt README: top-1 74.53 / 80.14 / 81.73 / 81.97 at 100 / 200 / 300 / 400 epochs). Everything else as the
# 300-epoch config: 5 warm-up epochs, then cosine to 1e-5 over the remaining epochs.
_base_ = ['./repnext-m0_4xb512-300e_cifar100.py']

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 4e-3, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5, end=400, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=400, val_interval=1)
