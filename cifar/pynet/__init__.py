"""PyNet on the CIFAR-10 side: PyTorch models converted to PyNet layers, a PyNet training
engine for the trainer, and PyNet inference behind the evaluation code."""
