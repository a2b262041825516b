"""A served process tunes its garbage collector (``allocator.api.collector``); the test process
itself is left alone, so this looks at a process of its own."""

from __future__ import annotations

import json
import subprocess
import sys

from allocator.api.collector import OLDER_THRESHOLDS, YOUNG_THRESHOLD

PROBE = """
import gc, json
from allocator.api.app import create_served_app
before = gc.get_threshold()
create_served_app()
print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count()]))
"""


def test_a_worker_process_app_tunes_the_collector_and_freezes_what_the_app_built() -> None:
    shown = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
        env={"ALLOCATOR_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "PATH": ""},
    ).stdout
    before, after, frozen = json.loads(shown)
    assert before == [700, 10, 10], "CPython's defaults before"
    assert after == [YOUNG_THRESHOLD, *OLDER_THRESHOLDS]
    assert frozen > 0
