"""The cyclic garbage collector of a server process, tuned for thousands of open streams.

With its defaults CPython collects the youngest generation every 700 new container objects, and
each delivery to a watcher makes a few (a future, a handle, the message of the write): with
thousands of watchers that is a collection for every few events written, and now and then a full
one that walks every object of the process. In a profile of 2000 watchers resuming at once
(py-spy, native frames), a sixth of the server's samples were in the collector, most of them
under the tailer waking the streams. Here it runs about seventy times less often,
and what exists once the app is built (modules, routes, settings) is moved out of its sight with
``gc.freeze``. Little of the feed's garbage is cyclic (frames and batches are freed by reference
counting), so memory does not wait on the collector; the cycles that exist (exceptions and their
tracebacks) are still collected, later.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
"""New container objects between two collections of the youngest generation (CPython: 700)."""
OLDER_THRESHOLDS = (20, 10)
"""Collections of a generation between two of the next older one (CPython: 10, 10)."""


def tune_for_serving() -> None:
    """Tune the collector of this process (call once the app is built, before serving)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
