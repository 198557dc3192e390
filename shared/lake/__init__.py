"""The medallion lake on Azure Blob Storage: bronze (raw), silver (conformed), gold (marts).

Layout (one container per layer, optionally prefixed for isolation, see ``LakeConfig``):

- ``bronze``: gzip JSON lines, create-only, ``{source}/{entity}/ingest_date=YYYY-MM-DD/{runId}-{n}.jsonl.gz``
  (``shared.lake.bronze``: light, azure-storage-blob only, safe for HTTP and Service Bus paths).
- ``silver``: one Delta table per conformed entity, MERGEd by business key, plus ``quarantine``
  and ``ingestion_runs`` (``shared.lake.silver``, ``shared.lake.specs``, ``shared.lake.runs``).
- ``gold``: Delta tables rebuilt deterministically from silver (``shared.lake.gold``).

Import discipline: deltalake, pyarrow and polars are imported only inside the functions of the
lake jobs, never at module level, so importing any module of this package stays cheap. This
package's ``__init__`` imports nothing at all.
"""
