"""The one error type ptune raises for problems a user can fix.

The CLI prints its message on one line and exits non-zero; library users catch `PtuneError`.
"""


class PtuneError(Exception):
    """A user-facing error: the message names the file/field at fault and what to do."""
