"""The import URI grammar of ``dicomStores.import`` (``gcsSource.uri``).

- ``*`` matches zero or more characters other than ``/``;
- ``?`` matches exactly one character other than ``/``;
- ``**`` matches zero or more characters including ``/``; it must be the only wildcard of the URI and sit in
  the last path segment, optionally followed by an extension (``gs://b/dir/**.dcm``);
- anything else (``[``, ``***``, ``**`` mid-path or with another wildcard, a wildcard in the bucket) is invalid.

A URI without wildcards names exactly one object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._\-]{1,220}[a-z0-9]$")
_EXTENSION_AFTER_DOUBLE_STAR = re.compile(r"^(\.[^/*?]+)?$")


class InvalidImportUriError(ValueError):
    """The URI is not a valid import source; the message says why."""


@dataclass(frozen=True)
class ImportPattern:
    """A parsed ``gs://bucket/object-pattern``."""

    bucket: str
    pattern: str
    regex: re.Pattern[str]

    @property
    def has_wildcards(self) -> bool:
        return "*" in self.pattern or "?" in self.pattern

    @property
    def literal_prefix(self) -> str:
        """The longest object-name prefix every match shares (what to list)."""
        cut = len(self.pattern)
        for char in "*?":
            index = self.pattern.find(char)
            if index != -1:
                cut = min(cut, index)
        return self.pattern[:cut]

    def matches(self, object_name: str) -> bool:
        return self.regex.fullmatch(object_name) is not None

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.pattern}"


def parse_import_uri(uri: str) -> ImportPattern:
    """Parse and validate an import URI, raising InvalidImportUriError with the reason."""
    if not isinstance(uri, str) or not uri.startswith("gs://"):
        raise InvalidImportUriError(f"gcsSource.uri must start with gs://, got {uri!r}")
    bucket, slash, pattern = uri[len("gs://") :].partition("/")
    if any(char in bucket for char in "*?[]"):
        raise InvalidImportUriError(f"wildcards are not allowed in the bucket name of {uri!r}")
    if not _BUCKET.match(bucket):
        raise InvalidImportUriError(f"invalid bucket name {bucket!r} in {uri!r}")
    if not slash or not pattern:
        raise InvalidImportUriError(f"{uri!r} names no object: give an object name or a wildcard pattern")
    if "[" in pattern or "]" in pattern:
        raise InvalidImportUriError(f"character classes ('[' or ']') are not supported in {uri!r}")
    if "***" in pattern:
        raise InvalidImportUriError(f"'***' is not a valid wildcard in {uri!r}")
    double_stars = pattern.count("**")
    if double_stars > 1:
        raise InvalidImportUriError(f"'**' may appear only once in {uri!r}")
    if double_stars == 1:
        head, _, tail = pattern.partition("**")
        if "*" in head or "?" in head or "?" in tail or "*" in tail:
            raise InvalidImportUriError(f"'**' must be the only wildcard in {uri!r}")
        if not _EXTENSION_AFTER_DOUBLE_STAR.match(tail):
            raise InvalidImportUriError(
                f"'**' must be at the end of {uri!r}, followed at most by an extension such as '.dcm'"
            )
    return ImportPattern(bucket=bucket, pattern=pattern, regex=re.compile(_to_regex(pattern), re.DOTALL))


def _to_regex(pattern: str) -> str:
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**", index):
            parts.append(".*")
            index += 2
        elif pattern[index] == "*":
            parts.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            parts.append("[^/]")
            index += 1
        else:
            parts.append(re.escape(pattern[index]))
            index += 1
    return "".join(parts)
