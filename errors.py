"""The one exception type for errors a user can cause.

Its message names the thing that is wrong and the fix; the CLI prints it on one line and
exits non-zero. Per-trailer failures in a batch run are recorded with this message.
"""


class T12kError(Exception):
    """A problem with the user's input, files or settings (not a bug in t12k)."""
