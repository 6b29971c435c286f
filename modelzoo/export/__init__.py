"""Exporting models to run where the data is (TensorFlow.js today)."""
