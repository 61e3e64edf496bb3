# RepLKNet-31B ImageNet-1k training schedule (RepLKNet-pytorch README, single-machine command:
# 8 GPUs x batch 64 x update_freq 4 = global batch 2048, --lr 4e-3 --warmup_epochs 10 --epochs 300;
# main.py defaults: AdamW, eps 1e-8, weight decay 0.05, no weight decay on biases and 1-D parameters,
# min_lr 1e-6, per-iteration cosine schedule after a linear warm-up, no gradient clipping).
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=4e-3, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0))

param_scheduler = [
    # Upstream warms up from 0; LinearLR needs a positive start factor.
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=10, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=10, end=300,
         convert_to_iter_based=True),
]

train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# lr 4e-3 belongs to a global batch of 2048; `tools/train.py --auto-scale-lr` rescales it linearly.
auto_scale_lr = dict(enable=False, base_batch_size=2048)
