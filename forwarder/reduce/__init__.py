"""Reduction before the SIEM: filters that keep or drop tuples, and aggregation into one event per key and window.

Both sit between normalising and formatting, per sink (``[filter]`` is the default for every sink that
has none of its own). They are pure: no I/O, the same input gives the same output, so a replay after a
crash rebuilds the same aggregates with the same ids.
"""
