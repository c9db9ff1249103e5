"""PRACTISE-style network acceleration: drop residual blocks under a measured latency budget,
recover the pruned network by feature mimicking on a tiny set."""

__version__ = "0.1.0"
