"""labkit: the small package behind the Pet Segmentation Lab notebooks."""

from labkit import allocator

__version__ = "0.1.0"

allocator.reuse_freed_memory()  # before any tensor: activations reuse freed memory (labkit/allocator.py)
