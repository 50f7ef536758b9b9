"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input from the user (missing file, bad MIDI, wrong shape, bad option value)."""
