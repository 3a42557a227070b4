"""The one exception type for problems a user can cause and fix (bad file, bad column, bad setting).

The CLI turns it into a single `error: ...` line and exit code 2; anything else is a bug and keeps
its traceback.
"""


class UserError(Exception):
    """Bad input or settings: the message is shown to the user as is, after `error: `."""
