"""User-facing errors: the CLI prints their message and exits non-zero, with no traceback."""


class UserError(Exception):
    """A mistake the user can fix (a missing file, a bad flag, a camera that will not open).

    `exit_code` is what the CLI returns; the message must say what went wrong and what to do.
    """

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code
