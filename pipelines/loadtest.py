"""`make loadtest`: a bounded loopback load test of the served API (bench/loadtest.py)."""

from bench.loadtest import main

if __name__ == "__main__":
    main()
