"""Objects under a ``gs://BUCKET/PREFIX`` as the pipeline would select them."""

from __future__ import annotations

from dataclasses import dataclass

from dicomflow.cli.context import Context
from dicomflow.stages.intake import select


@dataclass(frozen=True)
class GcsPrefix:
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, raw: str) -> GcsPrefix:
        if not raw.startswith("gs://") or not raw[5:].split("/", maxsplit=1)[0]:
            raise ValueError(f"{raw!r} is not gs://BUCKET[/PREFIX]")
        bucket, _, prefix = raw[5:].partition("/")
        return cls(bucket, prefix)

    def __str__(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}"


def selected_names(ctx: Context, where: GcsPrefix, limit: int = 10_000_000) -> list[str]:
    """Names under ``where`` that intake would select (suffix or sniffable), not excluded, sorted."""
    listing = ctx.store.list_objects(where.bucket, where.prefix, recursive=True, limit=limit)
    return [n for n in listing.names if not ctx.settings.excluded(where.bucket, n) and select(ctx.settings, n)]
