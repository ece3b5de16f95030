-- runs.kind (pipeline/run_kinds.py): full / limited / sample / window. Runs recorded before the
-- column existed get theirs from the options they recorded (a window set only in the config was
-- not recorded: such runs read as full).
ALTER TABLE runs ADD COLUMN IF NOT EXISTS kind VARCHAR;
UPDATE runs SET kind = CASE
        WHEN json_extract_string(options, '$.sample') IS NOT NULL THEN 'sample'
        WHEN coalesce(json_extract_string(options, '$.window'), '') <> '' THEN 'window'
        WHEN json_extract_string(options, '$.limit') IS NOT NULL THEN 'limited'
        ELSE 'full' END
WHERE kind IS NULL;
