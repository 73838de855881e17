"""python -m benchmarks [--quick] [--only NAME,...] [--impl IMPL,...] [--threads N]: see runner.py.
python -m benchmarks families [--quick] [--threads N] [--plot PNG] ...: see family_runner.py.
python -m benchmarks elementwise [--quick] [--sizes N,...] [--table MD]: see elementwise_sizes.py (one core).
The environment is set here, before NumPy, JAX or PyTorch is imported (environment.py); with
--threads 1, families also pins the whole process to one core (affinity.py)."""

import argparse
import sys
import tempfile

from benchmarks import affinity, environment

families = sys.argv[1:2] == ["families"]
elementwise = sys.argv[1:2] == ["elementwise"]
argv = sys.argv[2:] if families or elementwise else sys.argv[1:]
early = argparse.ArgumentParser(add_help=False)
early.add_argument("--threads", type=int, default=affinity.cores() if families else 1)
threads = 1 if elementwise else early.parse_known_args(argv)[0].threads
with tempfile.TemporaryDirectory(prefix="diffc-bench-cache-") as cache_dir:
    environment.prepare(threads, cache_dir)
    if (families or elementwise) and threads == 1:
        affinity.pin_to_one_core()
    if families:
        from benchmarks import family_runner  # noqa: E402  (imports NumPy)

        status = family_runner.main(argv)
    elif elementwise:
        from benchmarks import elementwise_sizes  # noqa: E402  (imports NumPy)

        status = elementwise_sizes.main(argv)
    else:
        from benchmarks import runner  # noqa: E402  (imports NumPy)

        status = runner.main(argv)
sys.exit(status)
