"""Checking model files before anything in them runs: HDF5 and ``.keras`` structure,
layer configs against the built-in classes, hashes in the same read (no TensorFlow
needed to scan).
"""
