"""Batch-job metrics of `capaudit run`, the conventional way: a node-exporter textfile and/or a
Pushgateway push, written at the end of every run whatever its outcome (`record.py`).

The names (`export.py` writes them with prometheus-client):

    capaudit_last_run_info{run_id, status}          1; the one series that names the run
    capaudit_last_run_start_timestamp_seconds       when this `capaudit run` started
    capaudit_last_run_finish_timestamp_seconds      when it ended
    capaudit_last_run_duration_seconds              the two apart
    capaudit_last_run_exit_code                     0, 1, 2 or 3 (docs/design.md §4)
    capaudit_last_success_timestamp_seconds         the newest succeeded run's end, kept across
                                                    runs (0: none known)
    capaudit_last_run_step_duration_seconds{step}   seconds of each step the run recorded
    capaudit_last_run_targets                       the run's targets
    capaudit_last_run_unanswered_ratio              NO_RESPONSE / queried targets (the gate's)
    capaudit_last_run_reachable_ratio{channel}      reachable share of the channel's targets

A figure the run did not get to (a run that failed before its build has no shares) is left
out rather than written as 0.
"""
