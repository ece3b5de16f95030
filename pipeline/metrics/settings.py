"""`[metrics]`: where `capaudit run` leaves its batch-job metrics (`pipeline.metrics`).

[metrics]
textfile = "/var/lib/node_exporter/textfile/capaudit.prom"   # node-exporter textfile collector
pushgateway_url = "http://pushgateway.example.com:9091"      # and/or a Pushgateway
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

TEXTFILE_SUFFIX = ".prom"  # node-exporter's textfile collector reads only these


@dataclass(frozen=True)
class MetricsSettings:
    textfile: str = ""  # "" writes none
    pushgateway_url: str = ""  # "" pushes nowhere

    def checks(self) -> list[tuple[bool, str]]:
        """(valid, message) pairs in the form `settings._validate` takes."""
        return [
            (
                not self.textfile or self.textfile.endswith(TEXTFILE_SUFFIX),
                f"[metrics] textfile must end in {TEXTFILE_SUFFIX}: node-exporter's textfile "
                "collector reads no other file",
            ),
            (
                not self.pushgateway_url
                or urlsplit(self.pushgateway_url).scheme in ("http", "https"),
                "[metrics] pushgateway_url must be an http(s) URL, e.g. http://pushgateway:9091",
            ),
        ]
