"""Worker for tests/test_distributed.py: ``cafe`` under torchrun, with one rank killed mid-run.

    kill_rank.py RANK WHAT N -- CAFE ARGS...

Rank RANK kills itself with SIGKILL (as an out-of-memory kill or a lost node would) at the N-th
batch it writes (WHAT = extract) or the N-th training step (WHAT = train), in the first launch only:
a process that torchrun relaunched (``--max-restarts``) runs to the end.
"""

import os
import signal
import sys

from cafe_cache.distributed import from_env, restarted

rank, what, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
args = sys.argv[sys.argv.index("--") + 1:]
calls = [0]


def dying(fn):
    def wrapped(*a, **k):
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return fn(*a, **k)
    return wrapped


if from_env().rank == rank and not restarted():
    if what == "extract":
        from cafe_cache.extract.writer import CacheWriter
        CacheWriter.write = dying(CacheWriter.write)
    else:
        import cafe_cache.train.loop as loop
        loop.channel_drop_mask = dying(loop.channel_drop_mask)  # drawn once per training step

from cli.main import main  # noqa: E402

sys.argv = ["cafe", *args]
main()
