"""Recovery: how recoverable each block is, and the feature-mimicking recovery of the pruned network with its recipes."""
