-- The lineage of one product's served model at the newest loaded revision ($product): every stage of the run
-- that produced it as recorded with the version (the dvc.lock entries committed with it), from the raw data to
-- the verdict, with its command, inputs and outputs by hash, params, metrics and checks; then the registry's
-- decision.
WITH RECURSIVE s AS (
    SELECT revision, product, version FROM served WHERE rev_index = 0 AND product = $product
),
l AS (
    SELECT v.* FROM version_lineage v JOIN s USING (revision, product, version)
),
-- Steps in data-flow order: a stage comes after every stage whose output it reads.
edges AS (
    SELECT DISTINCT o.stage AS upstream, d.stage AS downstream
    FROM l o JOIN l d ON o.role = 'out' AND d.role = 'dep' AND o.stage <> d.stage
                     AND (d.path = o.path OR starts_with(d.path, o.path || '/'))
),
walk(stage, depth) AS (
    SELECT DISTINCT stage, 0 FROM l
    UNION
    SELECT e.downstream, walk.depth + 1 FROM walk JOIN edges e ON e.upstream = walk.stage
),
steps AS (
    SELECT stage, dense_rank() OVER (ORDER BY max(depth), stage) AS step FROM walk GROUP BY stage
),
-- The metrics files a stage wrote for this version, joined by the md5 dvc.lock records, in any loaded revision.
outputs AS (
    SELECT stage, path, md5 FROM l WHERE role = 'out'
),
rows AS (
    SELECT v.stage, 0 AS part, 0 AS ord, 'cmd' AS item, '' AS name, v.cmd AS value
    FROM version_stages v JOIN s USING (revision, product, version)
    UNION ALL
    SELECT stage, CASE role WHEN 'dep' THEN 1 ELSE 3 END, 0, role, path, md5 FROM l
    UNION ALL
    SELECT p.stage, 2, 0, 'param', p.param, p.value
    FROM version_params p JOIN s USING (revision, product, version)
    UNION ALL
    SELECT DISTINCT o.stage, 4, 0, 'metric', m.metric,
           CASE WHEN m.json_type = 'DOUBLE' THEN CAST(round(m.number, 6) AS VARCHAR) ELSE m.value END
    FROM outputs o JOIN metrics m ON m.file = o.path AND m.file_md5 = o.md5
    WHERE m.number IS NOT NULL AND split_part(o.stage, '@', 1) NOT IN ('assess_model_risk', 'data_drift_check')
    UNION ALL
    SELECT DISTINCT o.stage, 5, g.check_index, 'check', g.check_name,
           CASE WHEN g.passed THEN 'passed' ELSE 'FAILED' END || ': ' || round(g.value, 4) || ' (threshold '
           || round(g.threshold, 4) || ')'
    FROM outputs o JOIN gates g ON g.file = o.path AND g.file_md5 = o.md5
    UNION ALL
    SELECT o.stage, 6, 0, 'metric', o.path, 'md5 ' || o.md5 || ' is in no loaded revision (--revisions N loads history)'
    FROM outputs o
    WHERE o.path LIKE 'metrics/%' AND NOT EXISTS (SELECT 1 FROM metrics m WHERE m.file = o.path AND m.file_md5 = o.md5)
    UNION ALL
    SELECT 'registry', 7, h.seq, h.action, strftime(h.time, '%Y-%m-%d %H:%M:%S'),
           h.reason || ' (git ' || coalesce(left(h.git_commit, 10), '-') || ')'
    FROM registry_history h JOIN s USING (revision, product, version)
    WHERE h.action IN ('promoted', 'rollback')
)
SELECT coalesce(t.step, (SELECT max(step) + 1 FROM steps)) AS step, r.stage, r.item, r.name, r.value
FROM rows r LEFT JOIN steps t USING (stage)
ORDER BY step, r.stage, r.part, r.ord, r.name
