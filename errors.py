"""User-facing errors shared by every script.

A mistake in a file, flag or config raises `AlbertError`; `run_main` turns it into one
line on stderr and exit status 2 instead of a traceback.
"""

import sys


class AlbertError(Exception):
    """A problem with the user's input that they can fix (the message says how)."""


def first_line(error):
    """The first line of an exception's message (TensorFlow's run to many lines)."""
    text = getattr(error, "message", None) or str(error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def run_main(main):
    """Run an absl `main(argv)`, printing `AlbertError`s as `error: ...` without a traceback."""
    from absl import app

    def guarded_main(argv):
        try:
            return main(argv)
        except AlbertError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    app.run(guarded_main)
