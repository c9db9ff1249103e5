"""Latency: budgets, latency tables for a model, selection under a budget, end-to-end measurement of networks and artefacts."""
