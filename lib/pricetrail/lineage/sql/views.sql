-- The documented views. Each is preceded by its one-line documentation ("-- name: what"); `pricetrail lineage
-- views` prints them with their columns. Every view but dir_files carries revision, rev_index (0 = the newest
-- loaded revision) and commit_time (NULL for the workspace).

-- revisions: the loaded revisions, newest first: revision (a commit sha, or 'workspace'), rev_index, commit_time, subject, has_lock
CREATE VIEW revisions AS
SELECT revision, rev_index, commit_time, subject, has_lock FROM internal.revisions;

-- products: the products in stockcodes.yaml: product, description
CREATE VIEW products AS
SELECT r.revision, r.rev_index, r.commit_time, p.product, p.description
FROM internal.files f JOIN internal.revisions r USING (revision) JOIN internal.products p ON p.blob = f.blob
WHERE f.kind = 'stockcodes';

-- stages: one row per stage in dvc.lock (stage@product): stage, kind (its dvc.yaml stage), product (NULL for a shared stage), cmd
CREATE VIEW stages AS
SELECT r.revision, r.rev_index, r.commit_time, s.stage, s.kind, s.product, s.cmd
FROM internal.files f JOIN internal.revisions r USING (revision) JOIN internal.lock_entries e ON e.blob = f.blob
     JOIN internal.lock_stages s ON s.entry = e.entry
WHERE f.kind = 'lock';

-- deps: every dependency of every stage as dvc.lock records it: stage, kind, product, path, md5 (a folder's is <md5>.dir), size, nfiles, is_dir
CREATE VIEW deps AS
SELECT r.revision, r.rev_index, r.commit_time, s.stage, s.kind, s.product, x.path, x.md5, x.size, x.nfiles,
       coalesce(x.md5 LIKE '%.dir', false) AS is_dir
FROM internal.files f JOIN internal.revisions r USING (revision) JOIN internal.lock_entries e ON e.blob = f.blob
     JOIN internal.lock_stages s ON s.entry = e.entry JOIN internal.lock_files x ON x.entry = e.entry
WHERE f.kind = 'lock' AND x.role = 'dep';

-- outs: every output of every stage as dvc.lock records it (metrics files included): stage, kind, product, path, md5, size, nfiles, is_dir
CREATE VIEW outs AS
SELECT r.revision, r.rev_index, r.commit_time, s.stage, s.kind, s.product, x.path, x.md5, x.size, x.nfiles,
       coalesce(x.md5 LIKE '%.dir', false) AS is_dir
FROM internal.files f JOIN internal.revisions r USING (revision) JOIN internal.lock_entries e ON e.blob = f.blob
     JOIN internal.lock_stages s ON s.entry = e.entry JOIN internal.lock_files x ON x.entry = e.entry
WHERE f.kind = 'lock' AND x.role = 'out';

-- dir_files: the files of each folder hash in the loaded dvc.lock revisions, served versions and drift references, from its .dir object in the DVC cache: dir_md5, relpath, md5
CREATE VIEW dir_files AS
SELECT dir_md5, relpath, md5 FROM internal.dir_files;

-- stage_edges: how data flows in dvc.lock: upstream (the stage writing an output), downstream (a stage depending on it or on a file inside it), path (the dependency), md5
CREATE VIEW stage_edges AS
SELECT r.revision, r.rev_index, r.commit_time, e.upstream, e.downstream, e.path, e.md5
FROM internal.files f JOIN internal.revisions r USING (revision) JOIN internal.lock_edges e ON e.blob = f.blob
WHERE f.kind = 'lock';

-- stage_params: the params each stage last ran with (dvc.lock), nested keys dotted: stage, kind, product, file, param, value, number
CREATE VIEW stage_params AS
SELECT r.revision, r.rev_index, r.commit_time, s.stage, s.kind, s.product, x.file, x.param, x.value, x.number
FROM internal.files f JOIN internal.revisions r USING (revision) JOIN internal.lock_entries e ON e.blob = f.blob
     JOIN internal.lock_stages s ON s.entry = e.entry JOIN internal.lock_params x ON x.params = s.params
WHERE f.kind = 'lock';

-- params: params.yaml as committed, nested keys dotted (what the next run uses): param, value, number
CREATE VIEW params AS
SELECT r.revision, r.rev_index, r.commit_time, x.param, x.value, x.number
FROM internal.files f JOIN internal.revisions r USING (revision) JOIN internal.params_values x ON x.blob = f.blob
WHERE f.kind = 'params';

-- metrics: every value of every metrics file, flattened by DuckDB's JSON reader (nested keys dotted, lists as one JSON value): product, stage, file, file_md5 (as dvc.lock records the file), metric, value, number, json_type
CREATE VIEW metrics AS
SELECT r.revision, r.rev_index, r.commit_time, f.product, f.stage, f.path AS file, b.md5 AS file_md5, m.metric,
       m.value, m.number, m.json_type
FROM internal.files f JOIN internal.revisions r USING (revision) JOIN internal.json_blobs b ON b.blob = f.blob
     JOIN internal.metric_values m ON m.blob = f.blob
WHERE f.kind = 'metrics';

-- gates: every check of both gates (the drift gate's drifted share and each monitored column; each check of the risk gate's verdict): product, stage, gate_passed, check_index, check_name, passed, value, threshold, comparison, detail, model_version, file, file_md5
CREATE VIEW gates AS
SELECT r.revision, r.rev_index, r.commit_time, f.product, f.stage, c.gate_passed, c.check_index, c.check_name,
       c.passed, c.value, c.threshold, c.comparison, c.detail, c.model_version, f.path AS file, b.md5 AS file_md5
FROM internal.files f JOIN internal.revisions r USING (revision) JOIN internal.json_blobs b ON b.blob = f.blob
     JOIN internal.checks c ON c.blob = f.blob
WHERE f.kind = 'metrics';

-- verdict_lineage: what each verdict assessed: product, model_version, hash_kind ('file': a file's md5; 'dvc': a dep as dvc.lock records it), key, path, md5
CREATE VIEW verdict_lineage AS
SELECT r.revision, r.rev_index, r.commit_time, f.product, v.model_version, v.hash_kind, v.key,
       CASE WHEN v.hash_kind = 'dvc' THEN v.key ELSE k.path END AS path, v.md5
FROM internal.files f JOIN internal.revisions r USING (revision) JOIN internal.verdict_inputs v ON v.blob = f.blob
     LEFT JOIN internal.lineage_keys k ON k.product = f.product AND k.key = v.key
WHERE f.kind = 'metrics';

-- registry_history: every registry decision, oldest first (seq): product, seq, time, action (promoted, kept, none, rollback, accepted_drift), version, candidate, from_version, reason, git_commit, git_dirty, test_rmsle, test_mae, baseline_rmsle, window_first, window_last
CREATE VIEW registry_history AS
SELECT r.revision, r.rev_index, r.commit_time, h.product, h.seq, TRY_CAST(h.time AS TIMESTAMPTZ) AS time, h.action,
       h.version, h.candidate, h.from_version, h.reason, h.git_commit, h.git_dirty, h.test_rmsle, h.test_mae,
       h.baseline_rmsle, TRY_CAST(h.window_first AS DATE) AS window_first,
       TRY_CAST(h.window_last AS DATE) AS window_last
FROM internal.files f JOIN internal.revisions r USING (revision) JOIN internal.history h ON h.blob = f.blob
WHERE f.kind = 'history';

-- served: what each product serves (registry/<code>/served.json): product, version, served_by, served_since, reason, promoted_at, git_commit, git_dirty, train_first_date, train_last_date, train_rows, test_rmsle, test_mae, baseline_rmsle
CREATE VIEW served AS
SELECT r.revision, r.rev_index, r.commit_time, x.product, x.version, x.served_by,
       TRY_CAST(x.served_since AS TIMESTAMPTZ) AS served_since, x.reason,
       TRY_CAST(x.promoted_at AS TIMESTAMPTZ) AS promoted_at, x.git_commit, x.git_dirty,
       TRY_CAST(x.train_first_date AS DATE) AS train_first_date, TRY_CAST(x.train_last_date AS DATE) AS train_last_date,
       x.train_rows, x.test_rmsle, x.test_mae, x.baseline_rmsle
FROM internal.files f JOIN internal.revisions r USING (revision) JOIN internal.records x ON x.blob = f.blob
WHERE f.kind = 'served';

-- versions: every version a product has served (registry/<code>/versions/<v>.json): product, version, is_served, promoted_at, git_commit, git_dirty, train_first_date, train_last_date, train_rows, test_rmsle, test_mae, baseline_rmsle, drift
CREATE VIEW versions AS
SELECT r.revision, r.rev_index, r.commit_time, x.product, x.version, coalesce(s.version = x.version, false) AS is_served,
       TRY_CAST(x.promoted_at AS TIMESTAMPTZ) AS promoted_at, x.git_commit, x.git_dirty,
       TRY_CAST(x.train_first_date AS DATE) AS train_first_date, TRY_CAST(x.train_last_date AS DATE) AS train_last_date,
       x.train_rows, x.test_rmsle, x.test_mae, x.baseline_rmsle, x.drift
FROM internal.files f JOIN internal.revisions r USING (revision) JOIN internal.records x ON x.blob = f.blob
     LEFT JOIN served s ON s.revision = f.revision AND s.product = f.product
WHERE f.kind = 'version';

-- version_artifacts: the files each version serves, by content: product, version, artifact, path, md5, size, out (the DVC output holding it), out_md5 (that output's hash in dvc.lock)
CREATE VIEW version_artifacts AS
SELECT r.revision, r.rev_index, r.commit_time, x.product, x.version, a.artifact, a.path, a.md5, a.size, a.out,
       a.out_md5
FROM internal.files f JOIN internal.revisions r USING (revision) JOIN internal.records x ON x.blob = f.blob
     JOIN internal.record_artifacts a ON a.blob = f.blob
WHERE f.kind = 'version';

-- version_stages: the dvc.lock entries recorded with each version (its run's stages): product, version, stage, kind, cmd
CREATE VIEW version_stages AS
SELECT r.revision, r.rev_index, r.commit_time, x.product, x.version, s.stage, s.kind, s.cmd
FROM internal.files f JOIN internal.revisions r USING (revision) JOIN internal.records x ON x.blob = f.blob
     JOIN internal.record_stages s ON s.blob = f.blob
WHERE f.kind = 'version';

-- version_lineage: the deps and outs of those entries: product, version, stage, kind, role ('dep' or 'out'), path, md5
CREATE VIEW version_lineage AS
SELECT r.revision, r.rev_index, r.commit_time, x.product, x.version, s.stage, s.kind, s.role, s.path, s.md5
FROM internal.files f JOIN internal.revisions r USING (revision) JOIN internal.records x ON x.blob = f.blob
     JOIN internal.record_files s ON s.blob = f.blob
WHERE f.kind = 'version';

-- version_params: the params of those entries: product, version, stage, kind, param, value, number
CREATE VIEW version_params AS
SELECT r.revision, r.rev_index, r.commit_time, x.product, x.version, s.stage, s.kind, s.param, s.value, s.number
FROM internal.files f JOIN internal.revisions r USING (revision) JOIN internal.records x ON x.blob = f.blob
     JOIN internal.record_params s ON s.blob = f.blob
WHERE f.kind = 'version';

-- drift_references: what each product's drift gate compares against: product, kind (none, served_model, accepted_drift), label, path, md5, out_md5, window_first, window_last
CREATE VIEW drift_references AS
SELECT r.revision, r.rev_index, r.commit_time, d.product, d.kind, d.label, d.path, d.md5, d.out_md5,
       TRY_CAST(d.window_first AS DATE) AS window_first, TRY_CAST(d.window_last AS DATE) AS window_last
FROM internal.files f JOIN internal.revisions r USING (revision) JOIN internal.drift_refs d ON d.blob = f.blob
WHERE f.kind = 'drift_reference';

-- flowed_into(md5): a table macro: every stage a file's or folder's hash flowed into, reading it directly (depth 0, also as a file inside a folder dep) or downstream: revision, rev_index, stage, depth, via (the path it came through)
CREATE MACRO flowed_into(h) AS TABLE
WITH RECURSIVE reached(revision, stage, depth, via) AS (
    SELECT d.revision, d.stage, 0, d.path FROM deps d WHERE d.md5 = h
    UNION
    SELECT d.revision, d.stage, 0, d.path || '/' || x.relpath
    FROM deps d JOIN dir_files x ON x.dir_md5 = d.md5 WHERE x.md5 = h
    UNION
    SELECT e.revision, e.downstream, reached.depth + 1, e.path
    FROM reached JOIN stage_edges e ON e.revision = reached.revision AND e.upstream = reached.stage
)
SELECT x.revision, v.rev_index, x.stage, min(x.depth) AS depth, arg_min(x.via, x.depth) AS via
FROM reached x JOIN revisions v USING (revision)
GROUP BY x.revision, v.rev_index, x.stage
ORDER BY v.rev_index, depth, x.stage;
