"""What both command lines share: the argument parser's error contract, number parsing, the progress bar, plain
tables, and keeping library log noise off the terminal.

Kineto prints `profiler_start` lines from C++, torchao reports `.so` files it cannot load on CPU builds, and
libraries raise Python warnings; all of them write to file descriptor 2. Unless `--verbose`, `keep_quiet` points
fd 2 at a log file before those libraries are imported, and OpLens writes its own progress and errors to `err()`,
a duplicate of the real stderr. The log is deleted at exit unless something unexpected failed.
"""
from __future__ import annotations

import argparse
import atexit
import os
import sys
import tempfile
from typing import Callable, TextIO

VERBOSE_FLAGS = ("--verbose", "-v")
_real_err: TextIO | None = None
_log: dict[str, str | bool] = {"path": "", "keep": False}


def keep_quiet(argv: list[str]) -> None:
    """Send fd 2 to a log file unless argv asks for --verbose (or $OPLENS_VERBOSE is set)."""
    global _real_err
    if _real_err is not None or any(a in VERBOSE_FLAGS for a in argv) or os.environ.get("OPLENS_VERBOSE"):
        return
    sys.stderr.flush()
    _real_err = os.fdopen(os.dup(2), "w", buffering=1)
    fd, path = tempfile.mkstemp(prefix="oplens-", suffix=".log")
    os.dup2(fd, 2)
    os.close(fd)
    _log["path"] = path
    atexit.register(_drop_log)


def _drop_log() -> None:
    if _log["path"] and not _log["keep"]:
        try:
            os.unlink(str(_log["path"]))
        except OSError:
            pass


def log_path() -> str:
    """Where library output went (empty when it goes to the terminal); the file is kept from now on."""
    _log["keep"] = True
    return str(_log["path"])


def err() -> TextIO:
    """The terminal's stderr, for OpLens's own progress, warnings and errors."""
    return _real_err or sys.stderr


def strip_verbose(argv: list[str]) -> tuple[list[str], bool]:
    """argv without the verbose flags (accepted anywhere on the line), and whether one was there."""
    kept = [a for a in argv if a not in VERBOSE_FLAGS]
    return kept, len(kept) != len(argv)


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own usage errors: same contract, exit 2 with `error:`
        self.print_usage(err())
        print(f"error: {message}", file=err())
        raise SystemExit(2)

    def add_verbose(self) -> None:
        """Name --verbose in the help; main() takes it from anywhere on the line (strip_verbose)."""
        self.add_argument("--verbose", "-v", action="store_true",
                          help="show library log output (Kineto, torchao, warnings) on stderr; any position")


def positive(kind: Callable = int, minimum: float = 1, maximum: float | None = None):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {text}")
        return value
    return parse


def progress_bar(enabled: bool | None = None):
    """(update(stage, fraction), close) drawing on the terminal; (None, no-op) when stderr is not a terminal."""
    if enabled is None:
        enabled = err().isatty()
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=100, file=err(), bar_format="{desc:<36} {bar} {percentage:3.0f}% {elapsed}", leave=False)

    def update(stage: str, fraction: float):
        bar.set_description_str(stage[:36])
        bar.n = int(100 * fraction)
        bar.refresh()
    return update, bar.close


def format_table(rows: list[list[str]], header: list[str], left: tuple[int, ...] = (0,)) -> str:
    """Plain-text table; columns in `left` are left-aligned (text), the rest right-aligned (numbers)."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(c).ljust(w) if i in left else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def fail_unexpected(exc: BaseException) -> int:
    """An error OpLens did not foresee: one line, with the log that holds the traceback; exit 2."""
    import traceback

    traceback.print_exc()  # into the log (fd 2), or onto the terminal with --verbose
    where = log_path()
    hint = f"; the traceback is in {where}" if where else ""
    print(
        f"error: unexpected {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
        f"{hint}",
        file=err(),
    )
    return 2
