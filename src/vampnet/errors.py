"""The typed exceptions of the package: every error a user can cause is one of these, with a one-line message."""


class VampNetError(Exception):
    """Base class: a problem with the user's input, files or options (never a bug in vampnet)."""


class AudioError(VampNetError):
    """An audio file is missing, unreadable, empty or otherwise unusable."""


class CheckpointError(VampNetError):
    """A checkpoint is missing, corrupt, of the wrong kind, or does not match its architecture."""


class OptionError(VampNetError, ValueError):
    """An option or argument has a value outside what it accepts."""


class CorpusError(VampNetError):
    """A corpus source is missing or cannot be fetched, or a tool it needs (dpkg, fluidsynth, a soundfont) is absent."""


class CodesFileError(VampNetError):
    """A token file (codes .npz, compressed file) is missing, corrupt or inconsistent."""


class TrackerUnavailable(VampNetError):
    """The package a beat or onset tracker needs is not installed."""


class TrackerError(VampNetError):
    """A beat or onset tracker is installed but could not run on this input."""


class Cancelled(VampNetError):
    """A running job was stopped on request (HARP's cancel, the OSC bridge's stop or a newer loop)."""


def first_line(error: BaseException, last: bool = False) -> str:
    """The first (or `last`) non-empty line of an exception's message, else its type's name: other libraries'
    multi-line messages, cut to what fits a one-line error."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return (lines[-1] if last else lines[0]).strip()
