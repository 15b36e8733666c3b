"""The live layer: the stream's newest committed events as typed live numbers.

See README.md in this folder for the design, the windows and the guarantees.
"""

from musify.live.view import Live, LiveView, MinuteListens, StatusChange, Trend

__all__ = ["Live", "LiveView", "MinuteListens", "StatusChange", "Trend"]
