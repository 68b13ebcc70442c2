-- The fleet at the newest loaded revision: one row per product of stockcodes.yaml, its gates, what it serves and
-- its key metrics (the readable replacement for `dvc metrics show`).
WITH latest AS (
    SELECT revision FROM revisions WHERE rev_index = 0
),
drift AS (
    SELECT product, gate_passed, passed, value
    FROM gates WHERE revision = (SELECT revision FROM latest) AND check_name = 'drifted_share'
),
risk AS (
    SELECT product, any_value(model_version) AS model_version, bool_and(passed) AS passed,
           string_agg(CASE WHEN NOT passed THEN check_name END, ', ' ORDER BY check_index) AS failed
    FROM gates WHERE revision = (SELECT revision FROM latest) AND stage LIKE 'assess_model_risk@%'
    GROUP BY product
),
-- A verdict is stale when the features it assessed are not the ones the product's ETL last wrote (its chain
-- stopped at a failed drift gate since): compared as a folder hash, or as a file inside that folder.
features AS (
    SELECT product, md5 FROM outs
    WHERE revision = (SELECT revision FROM latest) AND kind = 'etl_pipeline' AND is_dir
),
assessed AS (
    SELECT product, md5 FROM verdict_lineage
    WHERE revision = (SELECT revision FROM latest) AND (key = 'features_md5' OR (hash_kind = 'dvc' AND md5 LIKE '%.dir'))
),
stale AS (
    SELECT f.product,
           NOT bool_or(a.md5 = f.md5 OR EXISTS (SELECT 1 FROM dir_files x WHERE x.dir_md5 = f.md5 AND x.md5 = a.md5))
               AS stale
    FROM features f JOIN assessed a USING (product)
    GROUP BY f.product
),
numbers AS (
    SELECT product,
           max(number) FILTER (WHERE stage LIKE 'inference_primary_model@%' AND metric = 'rmsle') AS test_rmsle,
           max(number) FILTER (WHERE stage LIKE 'assess_model_risk@%' AND metric = 'risk.baseline_rmsle')
               AS baseline_rmsle,
           max(number) FILTER (WHERE stage LIKE 'tune_primary_model@%' AND metric = 'rmsle') AS validation_rmsle,
           max(number) FILTER (WHERE stage LIKE 'etl_pipeline@%' AND metric = 'rows') AS clean_rows
    FROM metrics WHERE revision = (SELECT revision FROM latest)
    GROUP BY product
),
last_decision AS (
    SELECT product, arg_max(action, seq) AS action, arg_max(time, seq) AS time
    FROM registry_history WHERE revision = (SELECT revision FROM latest)
    GROUP BY product
)
SELECT p.product,
       coalesce(s.version, '-') AS serving,
       s.served_since::DATE AS served_since,
       CASE WHEN d.product IS NULL THEN '-' WHEN d.passed THEN 'passed' WHEN d.gate_passed THEN 'drift let through'
            ELSE 'FAILED' END AS drift_gate,
       round(d.value, 3) AS drifted_share,
       coalesce(r.model_version, '-') AS latest_model,
       CASE WHEN r.product IS NULL THEN '-' WHEN r.passed THEN 'passed' ELSE 'FAILED ' || r.failed END
           || CASE WHEN t.stale THEN ' (stale: data changed since)' ELSE '' END AS risk_gate,
       round(n.test_rmsle, 4) AS test_rmsle,
       round(n.baseline_rmsle, 4) AS baseline_rmsle,
       n.clean_rows::BIGINT AS clean_rows,
       CASE WHEN l.product IS NULL THEN '-' ELSE l.action || ' ' || strftime(l.time, '%Y-%m-%d') END AS last_decision
FROM products p
LEFT JOIN served s ON s.revision = p.revision AND s.product = p.product
LEFT JOIN drift d ON d.product = p.product
LEFT JOIN risk r ON r.product = p.product
LEFT JOIN stale t ON t.product = p.product
LEFT JOIN numbers n ON n.product = p.product
LEFT JOIN last_decision l ON l.product = p.product
WHERE p.revision = (SELECT revision FROM latest)
ORDER BY p.product
