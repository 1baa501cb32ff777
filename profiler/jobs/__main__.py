"""`python -m profiler.jobs '<payload json>'`: run one job in this process (see profiler.jobs.worker)."""
import sys

from profiler.jobs.worker import serve

sys.exit(serve(sys.argv[1:]))
