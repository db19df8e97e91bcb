"""labkit: the small package behind the Pet Segmentation Lab notebooks.

Importing it changes nothing outside the package: memory reuse (labkit.allocator) is turned on by
the command line, the workbook runner and the benchmarks, where the work happens.
"""

__version__ = "0.1.0"
