# RepNeXt-M0E on CIFAR-100, the 400-epoch schedule of upstream's compact-model experiment
# (suous/RepNeXt README: top-1 73.56 / 79.79 / 81.89 / 82.07 at 100 / 200 / 300 / 400 epochs). Everything else as the
# 300-epoch config: 5 warm-up epochs, then cosine to 1e-5 over the remaining epochs.
# (M0E = the single-branch equivalent form of M0, trained as such: one depthwise 11x11 per block.)
_base_ = ['./repnext-m0e_4xb512-300e_cifar100.py']

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 4e-3, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5, end=400, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=400, val_interval=1)
