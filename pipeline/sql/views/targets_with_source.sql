-- targets_with_source: the targets as analysts see them (docs/warehouse.md), each with the name
-- of its input file; `targets` itself stores only the file's number (see warehouse.py).
CREATE OR REPLACE VIEW targets_with_source AS
SELECT t.run_id, t.contact_key, t.contact_id, t.channel, t.identity, f.source, t.row_number,
    t.action, t.reuse_run_id, t.country
FROM targets t JOIN target_files f USING (run_id, file_index);
