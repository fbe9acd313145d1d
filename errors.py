"""User-facing errors shared by every script.

A mistake in a file, flag or config raises `AlbertError`; `run_main` turns it into one
line on stderr and exit status 2 instead of a traceback.
"""

import os
import sys


class AlbertError(Exception):
    """A problem with the user's input that they can fix (the message says how)."""


def first_line(error):
    """The first line of an exception's message (TensorFlow's run to many lines)."""
    text = getattr(error, "message", None) or str(error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def check_output_path(path, flag, directory=False):
    """One-line AlbertError if `path` cannot be written: it, or a parent, is in the way.

    Without this a script finds out only when it first writes, often after minutes of work,
    with a NotADirectoryError traceback. `directory`: the path is a directory to create (an
    existing file there is an error), else a file (an existing directory is). Cloud paths
    (gs://...) are left to the writer.
    """
    if not path or "://" in str(path):
        return
    absolute = os.path.abspath(path)
    if directory and os.path.exists(absolute) and not os.path.isdir(absolute):
        raise AlbertError(f"--{flag}={path} exists and is not a directory")
    if not directory and os.path.isdir(absolute):
        raise AlbertError(f"--{flag}={path} is a directory; give a file name")
    parent = os.path.dirname(absolute)
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise AlbertError(f"--{flag}={path}: {parent} is a file, not a directory")


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
