"""Neural networks described as data: layer schemas, shape checks, presets, and builders
for Keras and PyTorch that turn one description into a model on either framework."""
