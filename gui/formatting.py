"""How values look in every view: durations, numbers, job-state colours.

One module so the queue, the runs table, the grid builder and the run detail
pane say the same thing the same way.
"""

from __future__ import annotations

from blueno.run_filter import cell_text

STATE_COLOURS = {
    "queued": "#5f6b7a",
    "held": "#b07d00",
    "running": "#1565c0",
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "cancelled": "#8d6e63",
}


def format_duration(seconds: float | None) -> str:
    """``m:ss`` or ``h:mm:ss``; empty when unknown."""
    if seconds is None or seconds < 0:
        return ""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"



# Cell text is defined once, in the library, because the runs filter matches what the table shows.
format_value = cell_text
