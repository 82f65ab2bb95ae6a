"""The one exception family the CLI turns into a single `error: ...` line and a non-zero exit."""


class UserError(Exception):
    """Bad input from the user (file, value, store path); the message names it."""


class StoreError(UserError):
    """The store path is not a store, a version does not exist, or a write was refused."""


class CommitConflict(StoreError):
    """A commit whose changes conflict with one another writer committed meanwhile (nothing was committed)."""
