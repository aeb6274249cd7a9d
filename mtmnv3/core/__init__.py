"""Core layer: block specifications, registries, data structures, file and checkpoint I/O, layers, timing.

Nothing here imports another layer of the package.
"""
