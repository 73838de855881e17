"""python -m benchmarks [--quick] [--only NAME,...] [--impl IMPL,...] [--threads N]: see runner.py.
The environment is set here, before NumPy, JAX or PyTorch is imported (environment.py)."""

import argparse
import sys
import tempfile

from benchmarks import environment

early = argparse.ArgumentParser(add_help=False)
early.add_argument("--threads", type=int, default=1)
with tempfile.TemporaryDirectory(prefix="diffc-bench-cache-") as cache_dir:
    environment.prepare(early.parse_known_args()[0].threads, cache_dir)
    from benchmarks import runner  # noqa: E402  (imports NumPy)

    status = runner.main()
sys.exit(status)
