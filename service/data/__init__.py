"""Data sets: the built-in and uploaded tables (CSV) and arrays (MNIST, digits, NPZ), the
pictures students upload to image models, and resolving the data set a spec names."""
