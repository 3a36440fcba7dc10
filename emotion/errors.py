"""Errors whose message is the whole story: entry points print them without a traceback."""


class UserError(Exception):
    """Something the user can fix; the message says what was wrong, where, and what to do."""


class DatasetError(UserError, ValueError):
    """The data set cannot be read as FER2013."""


class ModelFileError(UserError, ValueError):
    """A model file that cannot (or must not) be loaded, or does not fit the configured model."""
