-- What changed from revision $before to revision $after: stages, external inputs (code, raw data, registry
-- records a stage reads), stage outputs by hash, params, metrics, registry decisions and the served versions.
WITH
a_stages AS (SELECT stage, cmd FROM stages WHERE revision = $before),
b_stages AS (SELECT stage, cmd FROM stages WHERE revision = $after),
-- A dependency no stage writes: source code, the raw input, a registry record.
inputs AS (
    SELECT DISTINCT d.revision, d.path, d.md5 FROM deps d
    WHERE d.revision IN ($before, $after)
      AND NOT EXISTS (SELECT 1 FROM outs o WHERE o.revision = d.revision
                      AND (d.path = o.path OR starts_with(d.path, o.path || '/')))
),
a_outs AS (SELECT stage, product, path, md5 FROM outs WHERE revision = $before),
b_outs AS (SELECT stage, product, path, md5 FROM outs WHERE revision = $after),
a_params AS (SELECT param, value FROM params WHERE revision = $before),
b_params AS (SELECT param, value FROM params WHERE revision = $after),
a_metrics AS (
    SELECT coalesce(product, '') AS product, coalesce(stage, file) AS stage, metric,
           CASE WHEN json_type = 'DOUBLE' THEN CAST(round(number, 6) AS VARCHAR) ELSE value END AS value
    FROM metrics WHERE revision = $before AND json_type <> 'ARRAY'
),
b_metrics AS (
    SELECT coalesce(product, '') AS product, coalesce(stage, file) AS stage, metric,
           CASE WHEN json_type = 'DOUBLE' THEN CAST(round(number, 6) AS VARCHAR) ELSE value END AS value
    FROM metrics WHERE revision = $after AND json_type <> 'ARRAY'
),
a_seq AS (SELECT product, max(seq) AS seq FROM registry_history WHERE revision = $before GROUP BY product),
a_served AS (SELECT product, version FROM served WHERE revision = $before),
b_served AS (SELECT product, version FROM served WHERE revision = $after),
changes AS (
    SELECT 1 AS ord, 'stage' AS kind, split_part(stage, '@', 2) AS product, stage AS item, a.cmd AS before,
           b.cmd AS after
    FROM a_stages a FULL JOIN b_stages b USING (stage)
    WHERE a.cmd IS DISTINCT FROM b.cmd
    UNION ALL
    SELECT 2, 'input', NULL, path, a.md5, b.md5
    FROM (SELECT path, md5 FROM inputs WHERE revision = $before) a
         FULL JOIN (SELECT path, md5 FROM inputs WHERE revision = $after) b USING (path)
    WHERE a.md5 IS DISTINCT FROM b.md5
    UNION ALL
    SELECT 3, 'output', coalesce(a.product, b.product), stage || ' ' || path, a.md5, b.md5
    FROM a_outs a FULL JOIN b_outs b USING (stage, path)
    WHERE a.md5 IS DISTINCT FROM b.md5
    UNION ALL
    SELECT 4, 'param', NULL, param, a.value, b.value
    FROM a_params a FULL JOIN b_params b USING (param)
    WHERE a.value IS DISTINCT FROM b.value
    UNION ALL
    SELECT 5, 'metric', nullif(coalesce(a.product, b.product), ''), stage || ' ' || metric, a.value, b.value
    FROM a_metrics a FULL JOIN b_metrics b USING (product, stage, metric)
    WHERE a.value IS DISTINCT FROM b.value
    UNION ALL
    SELECT 6, 'decision', h.product, h.action || ' ' || coalesce(h.version, '-'), NULL,
           strftime(h.time, '%Y-%m-%d %H:%M') || ' ' || h.reason
    FROM registry_history h LEFT JOIN a_seq q USING (product)
    WHERE h.revision = $after AND h.seq > coalesce(q.seq, 0)
    UNION ALL
    SELECT 7, 'served', product, 'version', a.version, b.version
    FROM a_served a FULL JOIN b_served b USING (product)
    WHERE a.version IS DISTINCT FROM b.version
)
SELECT kind, product, item, before, after FROM changes
ORDER BY ord, product NULLS FIRST, item
