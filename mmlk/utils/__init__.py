from .resources import resource_path

__all__ = ['resource_path']
