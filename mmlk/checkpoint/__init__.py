"""Pretrained-weight resolution and loading (placeholder until issue #7 lands)."""
from .loading import load_pretrained

__all__ = ['load_pretrained']
