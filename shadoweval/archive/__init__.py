"""``shadoweval archive``: pair and score records as date-partitioned Parquet (docs/archive.md).

layout.py names the files and reads them back as records; write.py merges new records into
the partitions with DuckDB; kafka.py reads a time window of a topic; command.py is the CLI.
"""
