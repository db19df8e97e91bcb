"""labkit: the small package behind the Pet Segmentation Lab notebooks."""

__version__ = "0.1.0"
