"""The network family (`framework` + `network`): Keras and PyTorch networks from presets or
layer lists. Its record is in `family`; the worker side is workers/trainers/network."""
