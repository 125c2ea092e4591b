"""Exception hierarchy. Every message names the thing, the value and the fix."""


class MmlabError(Exception):
    """Base class of every error mmlab raises on purpose."""


class DataError(MmlabError):
    """Input data is missing, malformed or inconsistent."""


class SequenceGapError(DataError):
    """A venue sequence number jumped or went backwards."""


class ConfigError(MmlabError):
    """A configuration key or value is invalid."""


class ParityError(MmlabError):
    """Two implementations that must agree do not."""


class DownloadError(MmlabError):
    """A remote dataset could not be fetched or failed its checksum."""
