"""The run's report: files for people and for other tools, from the warehouse models.

- `writer`: the report directory (`index.html`, `summary.json`, `reachability.csv`) and the
  summary other tools read;
- `exports`: the per-channel and routing exports (CSV and Parquet, sorted by contact);
- `charts`: inline SVG charts and tables, readable from a phone to a desktop screen;
- `rolling`: the sections for windows, late answers, coverage and sampled estimates;
- `pseudonyms`: keyed pseudonyms (HMAC-SHA256 inside DuckDB) for exports shared outside.
"""

from pipeline.report.writer import ReportFiles, render_html, report_summary, write_report

__all__ = ["ReportFiles", "render_html", "report_summary", "write_report"]
