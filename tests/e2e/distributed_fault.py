"""`torchrun -m tests.e2e.distributed_fault run ...`: `pipeline run` whose rank 1 is killed (SIGKILL, no
chance to say anything) when it starts its second candidate block, after saving its first."""

import os
import signal

from pipeline.cli.main import main
from pipeline.recovery import recoverability

if os.environ.get("RANK") == "1":
    _real = recoverability.recoverability_of
    _started: list[str] = []

    def _dies_on_the_second_block(block, *args, **kwargs):
        if _started:
            os.kill(os.getpid(), signal.SIGKILL)
        _started.append(block)
        return _real(block, *args, **kwargs)

    recoverability.recoverability_of = _dies_on_the_second_block

main()
