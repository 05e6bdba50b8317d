"""Start a stage as one plain process, or under torchrun when params.yaml asks for gpus > 1.

    python -m stages.launch stages.train --fold 0

gpus = 1: runs `python -m stages.train --fold 0` in this process's place (exec: same pid, same
exit code, nothing in between). gpus = N > 1: runs `torchrun --standalone --nproc_per_node=N
-m stages.train --fold 0` (as `python -m torch.distributed.run`, so the venv's torch).
"""

import os
import sys

from lib.common.params import load_params
from lib.train.distributed import torchrun_command
from lib.train.loop import TrainConfig
from stages.common import run

PARAMS = ["gpus"]
SPEED_PARAMS: list[str] = []


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m stages.launch <module> [args...]")
    module, args = sys.argv[1], sys.argv[2:]
    gpus = load_params(PARAMS, rules=TrainConfig.rules())["gpus"]
    command = (
        [sys.executable, "-m", module, *args] if gpus == 1 else torchrun_command(gpus, module, args)
    )
    sys.stdout.flush()
    os.execv(command[0], command)


if __name__ == "__main__":
    run(main)
