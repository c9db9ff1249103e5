"""`python -m pipeline ...` (and `torchrun -m pipeline ...`)."""

from pipeline.cli.main import main

main()
