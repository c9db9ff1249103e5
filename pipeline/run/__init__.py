"""The run: its settings, the stages it walks through, the deployment choice, export, run folder and report."""
