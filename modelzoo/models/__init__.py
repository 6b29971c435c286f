"""The TensorFlow layer: building and loading models, slicing at named layers, heads,
preprocessing, reading images, the feature cache, the transfer learner, inference and
publishing a trained model.
"""
