"""cnnlab: train and use convolutional networks for small images, fast, on a CPU."""

__version__ = "0.1.0"
