"""Errors whose message is the whole story (what failed, which file or setting, what to do): the driver ends
the job with that one line instead of a traceback from inside a Ray worker."""


class ClearError(Exception):
    """Raised where the failure is understood; the message names the file, row, field or setting."""
