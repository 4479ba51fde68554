"""A stall probe, loaded into a Bastion server by ``benchmarks/stalls.py`` (profiling only).

With ``STALL_PROBE_OUT`` set, a thread asks for the GIL every millisecond and records each
time it waited more than 3 ms: the wall time lost, the CPU this process burnt meanwhile (about
the gap: a thread of ours held the GIL; near zero: the machine ran something else), and where
every other thread stood when it got the GIL back. A ``gc.callbacks`` hook records every GC
pass over 1 ms. Both go to ``$STALL_PROBE_OUT.<pid>.json``, rewritten every ~2 s.
"""

from __future__ import annotations

import os

OUT = os.environ.get("STALL_PROBE_OUT")

if OUT:
    import gc
    import json
    import sys
    import threading
    import time
    import traceback
    from typing import Any

    path = f"{OUT}.{os.getpid()}.json"
    stalls: list[dict[str, Any]] = []
    passes: list[dict[str, Any]] = []
    started: dict[str, float] = {}

    def _on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started["t"] = time.perf_counter()
        elif "t" in started:
            ms = (time.perf_counter() - started.pop("t")) * 1000
            if ms > 1:
                passes.append({"t": time.time(), "gen": info["generation"], "ms": ms})

    def _short(frame: traceback.FrameSummary) -> str:
        name = frame.filename
        for cut in ("/site-packages/", "/src/", "/lib/python3."):
            name = name.split(cut)[-1]
        return f"{name}:{frame.lineno} {frame.name}"

    def _dump() -> None:
        with open(path + ".tmp", "w") as f:
            json.dump({"stalls": stalls, "gcs": passes}, f)
        os.replace(path + ".tmp", path)

    def _probe() -> None:
        me = threading.get_ident()
        n = 0
        while True:
            wall, cpu = time.perf_counter(), time.process_time()
            time.sleep(0.001)
            gap = (time.perf_counter() - wall - 0.001) * 1000
            n += 1
            if gap > 3:
                names = {t.ident: t.name for t in threading.enumerate()}
                where = {}
                for ident, frame in sys._current_frames().items():
                    if ident == me:
                        continue
                    try:  # another thread's frames can be torn down under us
                        stack = traceback.extract_stack(frame)[-8:]
                    except Exception:
                        continue
                    where[names.get(ident, str(ident))] = [_short(x) for x in stack]
                cpu_ms = (time.process_time() - cpu) * 1000
                stalls.append({"t": time.time(), "gap_ms": gap, "cpu_ms": cpu_ms, "where": where})
            if n % 2000 == 0:
                _dump()

    gc.callbacks.append(_on_gc)
    threading.Thread(target=_probe, name="stall-probe", daemon=True).start()
