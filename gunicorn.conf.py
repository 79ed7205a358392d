"""gunicorn's settings for the portal: JSON logs and Prometheus metrics across workers.

gunicorn reads this file by itself when started in this folder (``gunicorn wsgi:app``), or
with ``-c /path/to/gunicorn.conf.py``. Options on the command line win over these.

- Logs: gunicorn's own error log uses the portal's format (``PORTAL_LOG_FORMAT``: ``json``,
  the default, or ``text``), one line per record on standard error. gunicorn's access log
  stays off: the portal writes one access line per request itself, with its request id and
  without the query string.
- Workers: two processes per core (``WEB_CONCURRENCY`` overrides), two threads each
  (``gthread``). The collector's batches are CPU work in Python (parse, check, compress,
  encrypt), and the threads of one process share one interpreter lock: processes, not
  threads, let them use every core. The second thread keeps a process busy while the first
  waits for the database.
- Metrics: every worker writes its counts to ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics``
  adds them up. When the variable is not set, a fresh folder is made for this master (and
  removed when it exits); when it is set, the folder is emptied at start, because counts
  left by an earlier master would be added to this one's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * (os.cpu_count() or 1))
worker_class = "gthread"
threads = 2

_made_metrics_folder = False
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="portal-metrics-")
    _made_metrics_folder = True

_demo = os.environ.get("PORTAL_DEMO", "").strip().lower() in {"1", "true", "yes", "on"}
_format = os.environ.get("PORTAL_LOG_FORMAT") or ("text" if _demo else "json")
# A wrong value gets JSON here; the portal itself then refuses to start, saying why.
_formatter = ("portal.observability.logs.TextLineFormatter" if _format == "text"
              else "portal.observability.logs.JsonLineFormatter")

# Replaces gunicorn's own logging configuration: gunicorn.error in the portal's format;
# the root logger gets its handler from the portal itself (portal.observability.logs).
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"portal": {"()": _formatter}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "portal",
                            "stream": "ext://sys.stderr"}},
    "loggers": {
        "gunicorn.error": {"handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"handlers": [], "propagate": False},
    },
    "root": {"handlers": []},
}


def on_starting(server: Any) -> None:
    """Empty the metrics folder: counts of an earlier master must not be added to ours."""
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """Drop the live gauges of a worker that ended (its counters stay in the sum)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    """Remove the metrics folder this file made."""
    if _made_metrics_folder:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
