"""Reading the simulated device's logs (``spark_jql.scoring.simulated``): how busy were the slots?

device_busy = device seconds / (slots x seconds from the first device start to the last device end).
The sweep over the intervals also says how long *no* slot worked (the driver between units, or a
stage with no scoring task running) and how long *every* slot did, which tells a gap between
units from a straggler partition.
"""

from __future__ import annotations

from pathlib import Path


def read_intervals(folder: Path, since: float, until: float) -> list[tuple[int, float, float, int]]:
    """(pid, start, end, real tokens) of every micro-batch that started in [since, until], by start."""
    found = []
    for path in sorted(Path(folder).glob("device-*.tsv")):
        for line in path.read_text(encoding="utf-8").splitlines():
            pid, start, end, tokens = line.split("\t")
            if since <= float(start) <= until:
                found.append((int(pid), float(start), float(end), int(tokens)))
    return sorted(found, key=lambda r: r[1])


def busy_summary(intervals: list[tuple[int, float, float, int]], slots: int) -> dict:
    """device_seconds, window_seconds, device_busy and the concurrency profile of the intervals."""
    if not intervals:
        return {"device_seconds": 0.0, "window_seconds": 0.0, "device_busy": None, "micro_batches": 0, "tokens": 0}
    device = sum(end - start for _, start, end, _ in intervals)
    first, last = min(r[1] for r in intervals), max(r[2] for r in intervals)
    window = last - first
    events = sorted([(s, 1) for _, s, _, _ in intervals] + [(e, -1) for _, _, e, _ in intervals])
    active, previous, none, full, peak = 0, first, 0.0, 0.0, 0
    for t, step in events:
        if active == 0:
            none += t - previous
        elif active >= slots:
            full += t - previous
        active += step
        peak = max(peak, active)
        previous = t
    return {
        "device_seconds": round(device, 2),
        "window_seconds": round(window, 2),
        "device_busy": round(device / (slots * window), 4) if window > 0 else None,
        "micro_batches": len(intervals),
        "tokens": sum(r[3] for r in intervals),
        "workers": len({r[0] for r in intervals}),
        "peak_busy_slots": peak,
        "no_slot_busy_seconds": round(none, 2),
        "all_slots_busy_seconds": round(full, 2),
    }
