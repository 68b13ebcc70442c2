-- Derived tables, computed once when the database is built (the views below read them).

-- Every value of every metrics file, flattened by DuckDB's JSON reader: nested keys dotted (cleaning.rows_in),
-- a list kept whole as one JSON value. Files shared by several revisions are flattened once (keyed by blob).
CREATE TABLE internal.metric_values AS
SELECT b.blob,
       CASE WHEN t.fullkey = '$' THEN '' ELSE substr(t.fullkey, 3) END AS metric,
       CASE WHEN t.type = 'VARCHAR' THEN t.value ->> '$' WHEN t.type = 'NULL' THEN NULL ELSE t.value::VARCHAR END
           AS value,
       CASE WHEN t.type IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN TRY_CAST(t.value::VARCHAR AS DOUBLE) END AS number,
       t.type AS json_type
FROM internal.json_blobs b, json_tree(b.text) t
WHERE t.type <> 'OBJECT' AND NOT contains(t.fullkey, '[');  -- a list's items stay in the list's value

CREATE TABLE internal.gate_files AS
SELECT DISTINCT b.blob, b.text, split_part(f.stage, '@', 1) AS gate
FROM internal.json_blobs b JOIN internal.files f ON f.blob = b.blob
WHERE f.kind = 'metrics' AND split_part(f.stage, '@', 1) IN ('assess_model_risk', 'data_drift_check');

-- Every check of every gate: each check of a verdict; for the drift gate its drifted share and each column.
CREATE TABLE internal.checks AS
SELECT g.blob, e.key::INTEGER AS check_index, e.value ->> '$.name' AS check_name,
       TRY_CAST(e.value ->> '$.passed' AS BOOLEAN) AS passed, TRY_CAST(e.value ->> '$.value' AS DOUBLE) AS value,
       TRY_CAST(e.value ->> '$.threshold' AS DOUBLE) AS threshold, e.value ->> '$.comparison' AS comparison,
       e.value ->> '$.detail' AS detail, TRY_CAST(g.text ->> '$.promoted' AS BOOLEAN) AS gate_passed,
       g.text ->> '$.model_version' AS model_version
FROM internal.gate_files g, json_each(g.text -> '$.checks') e
WHERE g.gate = 'assess_model_risk'
UNION ALL
SELECT g.blob, 0, 'drifted_share', NOT TRY_CAST(g.text ->> '$.drift_detected' AS BOOLEAN),
       TRY_CAST(g.text ->> '$.drifted_share' AS DOUBLE), TRY_CAST(g.text ->> '$.drift_share_threshold' AS DOUBLE),
       'value < threshold',
       format('{} of {} monitored columns drifted{}', g.text ->> '$.drifted_count',
              json_array_length(g.text -> '$.monitored_columns'),
              CASE WHEN json_array_length(g.text -> '$.drifted_columns') > 0
                   THEN ' (' || array_to_string(from_json(g.text -> '$.drifted_columns', '["VARCHAR"]'), ', ') || ')'
                   ELSE '' END),
       NOT TRY_CAST(g.text ->> '$.drift_detected' AS BOOLEAN) OR g.text ->> '$.on_drift' = 'retrain', NULL
FROM internal.gate_files g
WHERE g.gate = 'data_drift_check'
UNION ALL
SELECT g.blob, 1 + row_number() OVER (PARTITION BY g.blob ORDER BY e.key), 'column ' || e.key,
       NOT TRY_CAST(e.value ->> '$.drifted' AS BOOLEAN), TRY_CAST(e.value ->> '$.score' AS DOUBLE),
       TRY_CAST(e.value ->> '$.threshold' AS DOUBLE), 'not drifted by ' || (e.value ->> '$.method'),
       NULL, NOT TRY_CAST(g.text ->> '$.drift_detected' AS BOOLEAN) OR g.text ->> '$.on_drift' = 'retrain', NULL
FROM internal.gate_files g, json_each(g.text -> '$.per_column') e
WHERE g.gate = 'data_drift_check';

-- What each verdict assessed: the md5 of each file it names, and (since the verdict records them) its deps as
-- dvc.lock records them (a folder as <md5>.dir).
CREATE TABLE internal.verdict_inputs AS
SELECT g.blob, g.text ->> '$.model_version' AS model_version, 'file' AS hash_kind, e.key, e.value ->> '$' AS md5
FROM internal.gate_files g, json_each(g.text -> '$.lineage') e
WHERE g.gate = 'assess_model_risk' AND e.key <> 'dvc_deps'
UNION ALL
SELECT g.blob, g.text ->> '$.model_version', 'dvc', e.key, e.value ->> '$'
FROM internal.gate_files g, json_each(g.text -> '$.lineage.dvc_deps') e
WHERE g.gate = 'assess_model_risk';

-- The dvc.lock entries recorded with each registry version ("stages": {stage: {cmd, deps, outs, params}}),
-- flattened like dvc.lock's own: params dotted, a list kept whole as compact JSON. Views, not tables: every
-- version ever promoted carries its entries (~1,000 records at 100 products), and only the version-lineage
-- questions read them, so the fleet report and most queries do not pay for flattening them.
CREATE VIEW internal.record_entries AS
SELECT r.blob, s.key AS stage, split_part(s.key, '@', 1) AS kind, s.value AS entry
FROM internal.record_json r, json_each(r.text -> '$.stages') s;

CREATE VIEW internal.record_stages AS
SELECT blob, stage, kind, entry ->> '$.cmd' AS cmd FROM internal.record_entries;

CREATE VIEW internal.record_files AS
SELECT e.blob, e.stage, e.kind, 'dep' AS role, d.key AS path, d.value ->> '$' AS md5
FROM internal.record_entries e, json_each(e.entry -> '$.deps') d
UNION ALL
SELECT e.blob, e.stage, e.kind, 'out', d.key, d.value ->> '$'
FROM internal.record_entries e, json_each(e.entry -> '$.outs') d;

CREATE VIEW internal.record_params AS
SELECT e.blob, e.stage, e.kind, replace(substr(t.fullkey, 3), '"', '') AS param,
       CASE WHEN t.type = 'VARCHAR' THEN t.value ->> '$' WHEN t.type = 'NULL' THEN NULL ELSE t.value::VARCHAR END
           AS value,
       CASE WHEN t.type IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN TRY_CAST(t.value::VARCHAR AS DOUBLE) END AS number
FROM internal.record_entries e, json_tree(e.entry -> '$.params') t
WHERE t.fullkey <> '$' AND NOT contains(t.fullkey, '[') AND (t.type <> 'OBJECT' OR t.value::VARCHAR = '{}');
