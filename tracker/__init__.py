"""MSC trial tracker: new and changed mesenchymal stem cell trials and papers, every morning."""

__version__ = "0.1.0"


def _quiet_interrupt(signum: int, frame: object) -> None:  # pragma: no cover - timing
    """Ctrl-C while the command line is still starting (imports): nothing has begun, so
    there is nothing to record; say so in one line instead of a traceback."""
    import os

    os.write(2, b"error: interrupted\n")
    os._exit(130)


def _guard_startup() -> None:
    """Only for the ``tracker`` console script: the CLI restores Python's handler (so a run
    can record its interruption) as soon as it starts (``tracker.cli.TrackerApp``)."""
    import os
    import signal
    import sys
    import threading

    if (os.path.basename(sys.argv[0]) == "tracker"
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
        signal.signal(signal.SIGINT, _quiet_interrupt)


_guard_startup()
