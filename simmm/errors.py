"""User-facing errors.

Every problem a user can fix (a missing dataset folder, an unreadable image, a bad recipe key, a checkpoint
of another model) raises :class:`SimmmError` with a message that names the file or key and what was expected.
The CLI prints such errors as one paragraph and exits non-zero; anything else is a bug and keeps its traceback.
"""

__all__ = ["SimmmError", "RecipeError", "DataError", "CheckpointError"]


class SimmmError(Exception):
    """An error caused by the user's input, explained in its message."""


class RecipeError(SimmmError):
    """A recipe key is unknown, has the wrong type or is out of range."""


class DataError(SimmmError):
    """A dataset file or folder is missing or malformed."""


class CheckpointError(SimmmError):
    """A checkpoint is unreadable or belongs to another model."""
