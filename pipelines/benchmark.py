"""`make bench`: inference speed, memory and agreement in one run (bench/run.py says what each section measures).

    python -m pipelines.benchmark            # full: writes reports/benchmark.{json,md}
    python -m pipelines.benchmark --quick    # smaller samples everywhere
"""

import sys

from bench.run import main

if __name__ == "__main__":
    sys.exit(main())
