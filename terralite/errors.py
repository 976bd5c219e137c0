"""The one exception type for errors a user can cause (bad path, bad raster, bad config).

The CLI prints its message as one line and exits non-zero, without a traceback, so every message
must name the offending file or value and say how to fix it.
"""


class TerraLiteError(Exception):
    """A problem with the user's input, explained in the message."""
