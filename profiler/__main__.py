import sys

from profiler.console import keep_quiet

keep_quiet(sys.argv[1:])  # before torch and friends are imported: their log lines go to a file unless --verbose

from profiler.cli import main  # noqa: E402

sys.exit(main())
