"""Landing segments: the durable hand-off between the receiver and the warehouse.

A receiver appends every acknowledged callback to its own segment files (`writer.py`); the batch
side ingests them into `notifications` (`ingest.py`). `segments.py` owns the file format.
"""
