"""The network: which blocks can be dropped (rule on the traced graph), dropping them, feature taps, adaptors, evaluation."""
