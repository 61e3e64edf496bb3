# Runtime defaults for mmsegmentation 1.x runs (carried inside mmlk because
# the mmsegmentation wheel ships no configs). Named `seg_runtime.py` rather
# than `default_runtime.py` so it cannot be confused with the classification
# or detection runtimes.
default_scope = 'mmseg'
# Every mmlk config imports the plugin itself, so users need no edits of the
# host library (the upstream "RepLKNet is not in the models registry" trap).
custom_imports = dict(imports=['mmlk'], allow_failed_imports=False)
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
tta_model = dict(type='SegTTAModel')
