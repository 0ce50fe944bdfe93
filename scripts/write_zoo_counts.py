#!/usr/bin/env python3
"""Count every model of the registry afresh and write exporter/zoo/counts.json.

    python scripts/write_zoo_counts.py [--check]

``crossrt zoo`` reads the counts from that file (it then needs no Paddle and answers at once);
a network whose key is not in it is counted when asked. --check exits 1 when the file differs
from a fresh count (the slow tests check the same).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exporter.counting import COUNTS_FILE, counts_document  # noqa: E402

if __name__ == "__main__":
    text = json.dumps(counts_document(), indent=1) + "\n"
    if "--check" in sys.argv:
        stale = not COUNTS_FILE.is_file() or COUNTS_FILE.read_text() != text
        print(f"stale: {COUNTS_FILE}" if stale else "up to date")
        sys.exit(1 if stale else 0)
    COUNTS_FILE.write_text(text)
    print(f"wrote {COUNTS_FILE}")
