"""torchrun whose failure report ends with one line naming the process that failed first and why:
python -m training.torchrun [torchrun arguments] train.py [its arguments] (train.sh runs it)."""
import os
import sys
from collections.abc import Sequence

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run


def failure_line(err: ChildFailedError) -> str:
    """'rank R (...) failed first: CAUSE' for the earliest failure torchrun saw on this node."""
    rank, failure = err.get_first_failure()
    if failure.exitcode < 0:
        cause = f"killed by signal {-failure.exitcode} ({failure.signal_name()})"
    elif os.path.isfile(failure.error_file):  # an uncaught exception under torch's @record
        cause = str(failure.message).strip().splitlines()[0]
    else:
        cause = f"exited with code {failure.exitcode} (its own error message is above)"
    return (f"error: rank {rank} (local rank {failure.local_rank}, pid {failure.pid}) failed first: {cause}; "
            "torchrun stopped the processes of this node")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        run(parse_args(argv))
    except ChildFailedError as err:
        print(failure_line(err), file=sys.stderr)
        exitcode = err.get_first_failure()[1].exitcode
        return exitcode if exitcode > 0 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
