# RepNeXt ImageNet-1k training schedule (suous/RepNeXt main.py defaults, the DeiT/RepViT recipe):
# 8 GPUs x batch 256 = global batch 2048, lr 1e-3 x 2048 / 512 = 4e-3, AdamW, weight decay 0.025
# (none on biases and 1-D parameters, timm's create_optimizer), 5 warm-up epochs from 1e-6, cosine to
# 1e-5 over 300 epochs.
# Not reproduced: upstream clips gradients adaptively (timm AGC, 0.02), which mmengine does not offer.
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=4e-3, weight_decay=0.025, eps=1e-8, betas=(0.9, 0.999)),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 4e-3, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5, end=300, convert_to_iter_based=True),
]

train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
val_cfg = dict()
test_cfg = dict()

auto_scale_lr = dict(enable=False, base_batch_size=2048)
