"""Errors a user can fix. Entry points print them as one line and exit 2."""


class GzslError(Exception):
    """Bad input: the message names the file, key or value and says what was expected."""


class DataError(GzslError):
    """A dataset file or dataset name is missing or malformed."""


class ConfigError(GzslError):
    """A study file or flag is invalid."""


class ResultsError(GzslError):
    """A results folder cannot be read or continued as asked."""


class NoResultsYet(GzslError):
    """A results folder holds no finished trial (yet): `gzsl.report --watch` waits for one."""


class ClusterError(GzslError):
    """The cluster can no longer run the study (every executor gone): fix it, then --resume."""
