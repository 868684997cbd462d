"""Errors a user can fix. Entry points print them as one line and exit 2."""


class GzslError(Exception):
    """Bad input: the message names the file, key or value and says what was expected. One line
    by construction: a line break or another control character a value brought into the message
    (a study file's key, a path, a URL) is written as its escape."""

    def __init__(self, message: str = ""):
        super().__init__(one_line(str(message)))


def one_line(text: str) -> str:
    """`text` with each unprintable character (a line break, a NUL) as its escape, e.g. \\n."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


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
