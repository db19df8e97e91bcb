"""`python -m labkit train ...` with a planted event, for tests/test_distributed.py to run under torchrun.

    python tests/distributed_worker.py interrupt train ...   Ctrl-C as epoch 2 starts, on every rank
                                                             (torchrun forwards SIGINT to all of them)
    python tests/distributed_worker.py fail train ...        rank 1 stops with a ValueError in epoch 1
"""

import sys

from labkit import cli, train

real_run_epoch = train.run_epoch


def interrupt(run, epoch):
    if epoch == 2:
        raise KeyboardInterrupt
    return real_run_epoch(run, epoch)


def fail(run, epoch):
    if run.state.world.rank == 1:
        raise ValueError("planted failure on rank 1")
    return real_run_epoch(run, epoch)


if __name__ == "__main__":
    train.run_epoch = {"interrupt": interrupt, "fail": fail}[sys.argv[1]]
    sys.exit(cli.main(sys.argv[2:]))
