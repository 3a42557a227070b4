"""What a command does around its work: a log file that keeps everything (tracebacks included), a
console that gets one line per message and never a traceback, and stop signals that end the process
within seconds.

- `log_file()`: the command's log file, under SYNTHGEN_LOG_DIR (default
  ~/.local/state/synthgen/logs); the newest LOG_FILES_KEPT are kept.
- `OneLineFormatter`: wraps a console handler's formatter so that it prints a message's first
  line only.
- `arm_stop_signals()`: the first SIGTERM or SIGINT raises `StopRequested` in the main thread, so
  the run unwinds (a run publishes nothing it has not finished); if it has not ended STOP_GRACE_S
  later, or at a second signal, the process kills its child processes (Prefect's temporary server,
  Dask workers) and exits at once. Staging folders it leaves are removed by the next run, as after
  a kill.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

LOG_FILES_KEPT = 50
STOP_GRACE_S = 8.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_log_path: Path | None = None
_cleanups: list[Callable[[], None]] = []
_armed = False
_stopping: int | None = None


class StopRequested(BaseException):
    """A stop signal arrived: whatever runs unwinds
    (BaseException, so no `except Exception` swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


# --------------------------------------------------------------------------------------------------
# Logs


def log_dir() -> Path:
    given = os.environ.get("SYNTHGEN_LOG_DIR")
    if given:
        return Path(given)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "synthgen" / "logs"


def log_file() -> Path | None:
    """This command's log file (None before `start_log_file`)."""
    return _log_path


MAX_LINE = 400  # characters of a message on the console; the log file keeps all of it


def shorten(line: str) -> str:
    """`line`, cut to MAX_LINE characters (a server's reply can quote a megabyte of request)."""
    return line if len(line) <= MAX_LINE else line[:MAX_LINE] + " [...]"


class OneLineFormatter(logging.Formatter):
    """Formats a copy of each record with its first line only and no traceback
    (the log file keeps both)."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter("%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        copy = logging.makeLogRecord(record.__dict__)
        message = record.getMessage()
        lines = message.strip().splitlines() or [""]
        first = shorten(lines[0].split("Traceback (most recent call last)")[0].rstrip())
        if len(lines) > 1 or record.exc_info or first != lines[0]:
            first += f" (details in {_log_path})" if _log_path else ""
        copy.msg, copy.args, copy.exc_info, copy.exc_text, copy.stack_info = (
            first,
            None,
            None,
            None,
            None,
        )
        return self.inner.format(copy)


def one_line_console(logger: logging.Logger) -> None:
    """Make every stream handler of `logger` print one line per message, without tracebacks."""
    for handler in logger.handlers:
        if (
            isinstance(handler, logging.StreamHandler)
            and not isinstance(handler, logging.FileHandler)
            and not isinstance(handler.formatter, OneLineFormatter)
        ):
            handler.setFormatter(OneLineFormatter(handler.formatter))


def start_log_file(command: str) -> Path | None:
    """Open this command's log file and send to it every record of synthgen, Prefect and warnings
    (DEBUG and up for synthgen, whatever Prefect logs). Returns its path, or None when no log folder
    can be written."""
    global _log_path
    folder = log_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = folder / f"{command}-{stamp}-{os.getpid()}.log"
        handler = logging.FileHandler(path, encoding="utf-8", delay=False)
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG)
    handler.set_name("synthgen-log-file")
    for name in ("synthgen", "py.warnings"):
        logging.getLogger(name).addHandler(handler)
    logging.captureWarnings(True)
    logging.getLogger(
        "py.warnings"
    ).propagate = False  # library warnings go to the file, not the console
    _log_path = path
    _prune(folder)
    return path


def _file_handler() -> logging.Handler | None:
    return next(
        (h for h in logging.getLogger("synthgen").handlers if h.get_name() == "synthgen-log-file"),
        None,
    )


def capture_root_logs(quiet: bool = False) -> None:
    """Send what reaches the root logger (Prefect's run logs, other libraries' warnings) to the log
    file too, and print it on the console one line per message (warnings and errors only when
    `quiet`). Call it after a library (Prefect) set up its own handlers."""
    root = logging.getLogger()
    handler = _file_handler()
    if handler is not None and handler not in root.handlers:
        root.addHandler(handler)
    one_line_console(root)
    if quiet:
        for console in root.handlers:
            if console is not handler and isinstance(console, logging.StreamHandler):
                console.setLevel(logging.WARNING)


def _prune(folder: Path) -> None:
    logs = sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime)
    for old in logs[:-LOG_FILES_KEPT]:
        old.unlink(missing_ok=True)


def record_failure(exc: BaseException) -> None:
    """Write a failure's full traceback to the log file only."""
    logger = logging.getLogger("synthgen.failure")
    logger.propagate = False
    handler = _file_handler()
    if handler is not None and not logger.handlers:
        logger.addHandler(handler)
    logger.error("the command failed", exc_info=(type(exc), exc, exc.__traceback__))


def failure_line(exc: BaseException) -> str:
    """The one console line of an unexpected failure: what it was, and where the traceback is."""
    text = str(exc).strip().splitlines()
    detail = f"{type(exc).__name__}: {shorten(text[0])}" if text else type(exc).__name__
    where = f"; the full traceback is in {_log_path}" if _log_path else ""
    return f"error: {detail}{where}"


# --------------------------------------------------------------------------------------------------
# Stop signals


def on_stop(cleanup: Callable[[], None]) -> None:
    """Run `cleanup` (stop a server, say) before the process ends, however it ends."""
    _cleanups.append(cleanup)


def arm_stop_signals() -> None:
    """Install the stop handler for SIGTERM and SIGINT (main thread only; a no-op elsewhere)."""
    global _armed
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in STOP_SIGNALS:
        signal.signal(sig, _on_signal)
    _armed = True


def rearm_stop_signals() -> None:
    """Inside a flow run that a synthgen command started: put the stop handler back over the one
    Prefect installs for the run. Elsewhere (a deployment served by Prefect) Prefect's own handling
    is left alone."""
    if _armed:
        arm_stop_signals()


def stopping() -> int | None:
    """The stop signal received, if any."""
    return _stopping


def _on_signal(signum: int, frame) -> None:
    global _stopping
    if _stopping is not None:  # a second signal: no more waiting
        hard_exit(signum)
    _stopping = signum
    threading.Thread(target=_watchdog, args=(signum,), name="synthgen-stop", daemon=True).start()
    raise StopRequested(signum)


def _watchdog(signum: int) -> None:
    time.sleep(STOP_GRACE_S)
    hard_exit(signum)


def run_cleanups() -> None:
    while _cleanups:
        cleanup = _cleanups.pop()
        try:
            cleanup()
        except Exception:
            # the process is ending: nothing else to do
            pass
    kill_descendants()


def hard_exit(signum: int) -> None:
    """Stop child processes and end this process now, with the shell's code for the signal."""
    try:
        print(
            f"error: stopped by {signal.Signals(signum).name}; nothing was published",
            file=sys.stderr,
            flush=True,
        )
    except Exception:
        pass
    run_cleanups()
    os._exit(128 + signum)


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, children first (Linux /proc; empty elsewhere)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    stack, found = [pid], []
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def kill_descendants() -> None:
    """SIGKILL every process below this one
    (on Linux; elsewhere only the registered cleanups run)."""
    for pid in descendants(os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
