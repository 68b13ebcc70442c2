"""A hostile user's afternoon on a served smoke project: every bad input is one clear refusal with nothing changed.

Five classes, each a list of inputs tried the way a user would (the command line in-process, HTTP through the
app, damaged records, bad params, YAML that DVC and pricetrail would read differently). An input fails the audit
when it gives a traceback, a 5xx for bad input, a success where a refusal was due, or leaves a file changed.
Concurrency and kills have tests of their own (test_registry_concurrency.py, test_landing.py, test_pipeline.py).
``pytest -s tests/integration/test_bad_inputs.py`` prints the table of classes and outcomes.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pricetrail import cli
from pricetrail.project.config import load_params, load_stockcodes, section
from pricetrail.project.copies import clone_project, set_params
from pricetrail.project.files import ConfigError

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CODE, OTHER = "85123A", "22423"
OUTCOMES: list[tuple[str, str, str]] = []  # (class, input, outcome)
WATCHED = ("registry", "params.yaml", "stockcodes.yaml", "dvc.lock", ".dvc/config")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, smoke_week1) -> Path:
    return clone_project(smoke_week1.root, tmp_path_factory.mktemp("audit") / "project")


def snapshot(root: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for name in WATCHED:
        path = root / name
        for item in [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []:
            if item.is_file():
                files[item.relative_to(root).as_posix()] = item.read_bytes()
    return files


def record(kind: str, what: str, problems: list[str]) -> None:
    OUTCOMES.append((kind, what, "clean" if not problems else "; ".join(problems)))


def cli_outcome(root: Path, argv: list[str], capsys: pytest.CaptureFixture[str], *, expect_refusal: bool = True,
                monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], str]:
    monkeypatch.chdir(root)
    before = snapshot(root)
    capsys.readouterr()
    try:
        code = cli.main(argv)
    except BaseException as error:  # noqa: BLE001 - an escaped exception is the audit's finding
        return [f"escaped {type(error).__name__}: {error}"], ""
    out, err = capsys.readouterr()
    problems = []
    if "Traceback" in err or "Traceback" in out:
        problems.append("traceback")
    if expect_refusal and code == 0:
        problems.append("wrong success")
    if expect_refusal and code != 0 and not err.strip():
        problems.append("refused without a word")
    if expect_refusal and snapshot(root) != before:
        problems.append("files changed")
    return problems, err.strip().splitlines()[-1] if err.strip() else out


CLI = [
    ["run", "99999"], ["run", "../x"], ["run", "--workers", "0"], ["run", "--workers", "-3"],
    ["run", "--workers", "1.5"], ["run", "--workers", "x"], ["run", "--timeout", "-1"], ["run", "--timeout", "0"],
    ["run", "--timeout", "nan"], ["run", "--timeout", "inf"], ["run", "--dask-address", "localhost:8786"],
    ["run", "--dask-address", "tcp://:1"], ["rollback", "99999"], ["rollback", "../etc"],
    ["rollback", CODE, "--to", "abcdef12"], ["rollback", CODE, "--to", "../../x"], ["rollback", CODE, "--to", ""],
    ["rollback", CODE], ["history", "../etc"], ["history", ""], ["history", f"{CODE}\n"],
    ["accept-drift", CODE, "--reason", ""], ["accept-drift", CODE, "--reason", "   "],
    ["accept-drift", "99999", "--reason", "x"], ["recommend", CODE, "--date", "2011-13-45"],
    ["recommend", CODE, "--date", "yesterday"], ["recommend", CODE, "--date", "2001-01-01"],
    ["recommend", CODE, "--date", "2011-11-14", "--low", "0"],
    ["recommend", CODE, "--date", "2011-11-14", "--low", "-1"],
    ["recommend", CODE, "--date", "2011-11-14", "--low", "1e-300"],
    ["recommend", CODE, "--date", "2011-11-14", "--high", "nan"],
    ["recommend", CODE, "--date", "2011-11-14", "--low", "5", "--high", "4"],
    ["recommend", CODE, "--date", "2011-11-14", "--widen", "5"],
    ["recommend", CODE, "--date", "2011-11-14", "--widen", "-0.1"],
    ["recommend", CODE, "--date", "2011-11-14", "--unit-cost", "-1"],
    ["recommend", CODE, "--date", "2011-11-14", "--unit-cost", "1e9"],
    ["recommend", CODE, "--date", "2011-11-14", "--unit-cost", "999999"],
    ["recommend", CODE, "--date", "2011-11-14", "--country", ""],
    ["recommend", CODE, "--date", "2011-11-14", "--country", "x" * 100],
    ["recommend", CODE, "--date", "2011-11-14", "--country", "United\x00Kingdom"],
    ["recommend", "99999", "--date", "2011-11-14"], ["serve", "--port", "70000"], ["serve", "--port", "0"],
    ["serve", "--port", "-1"], ["serve", "--threads", "0"], ["serve", "--threads", "10000"],
    ["serve", "--max-models", "0"], ["serve", "--max-memory-mb", "0"], ["serve", "--max-memory-mb", "nan"],
    ["profile", "nosuch"], ["profile", "../x"], ["promote", "--stockcode", "99999"],
    ["promote", "--stockcode", "../x"], ["remote", "add", "s3", "notaurl"],
    ["remote", "add", "bad name", "s3://bucket/p"], ["remote", "add", "s3", "s3://B/p"],
    ["remote", "add", "s3", "s3://bucket/p", "--endpoint-url", "ftp://x"],
    ["remote", "add", "s3", "s3://bucket/p", "--region", "moon"], ["push", "--remote", "nosuch"],
    ["pull", "--remote", "../x"], ["lineage", "query", "DROP TABLE deps"],
    ["lineage", "query", "SELECT * FROM nosuch"], ["lineage", "query", "COPY deps TO '/tmp/x.csv'"],
    ["lineage", "served", "99999"], ["lineage", "diff", "nosuchrev"],
    ["lineage", "query", "SELECT 1", "--format", "xml"],
    ["--wait", "-1", "gc"], ["--wait", "nan", "status"], ["nosuchcommand"],
]


def test_command_line(project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import waitress

    # A server that starts serving on a bad port or with no threads would never return: say it started instead.
    monkeypatch.setattr(waitress, "serve", lambda *args, **kwargs: None)
    failed = []
    for argv in CLI:
        problems, said = cli_outcome(project, argv, capsys, monkeypatch=monkeypatch)
        record("CLI", " ".join(argv), problems)
        if problems:
            failed.append((argv, problems, said))
    assert not failed, failed


def app_client(root: Path) -> Any:
    from pricetrail.registry.artifacts import dvc_cache_dir
    from pricetrail.serving.config import from_project
    from serve.app import create_app

    return create_app(from_project(root, dvc_cache_dir(root)), warm=False).test_client()


PRICE = f"/v1/products/{CODE}/price"
HTTP = [
    f"{PRICE}?min_price=cheap", f"{PRICE}?min_price=-1", f"{PRICE}?max_price=NaN", f"{PRICE}?max_price=inf",
    f"{PRICE}?min_price=5&max_price=5", f"{PRICE}?min_price=6&max_price=5", f"{PRICE}?points=0",
    f"{PRICE}?points=1", f"{PRICE}?points=100000", f"{PRICE}?points=2.5", f"{PRICE}?points=%C2%B2",
    f"{PRICE}?points=--5", f"{PRICE}?points=%D9%A1%D9%A2", f"{PRICE}?points=9999999999999", f"{PRICE}?points=",
    f"{PRICE}?min_price=1_0", f"{PRICE}?min_price=%201", f"{PRICE}?min_price=1e-300", f"{PRICE}?max_price=1e400",
    f"{PRICE}?min_price=", f"{PRICE}?max_price=1000001", f"{PRICE}?customer=vip", f"{PRICE}?customer=GUEST",
    f"{PRICE}?date=2011-13-45", f"{PRICE}?date=yesterday", f"{PRICE}?date=2011-02-30", f"{PRICE}?date=20111212",
    f"{PRICE}?date=2001-01-01", f"{PRICE}?date=", f"{PRICE}?unit_cost=-2", f"{PRICE}?unit_cost=1e7",
    f"{PRICE}?unit_cost=999999", f"{PRICE}?hour=24", f"{PRICE}?hour=-1", f"{PRICE}?hour=1.5",
    f"{PRICE}?country=%00", f"{PRICE}?country=" + "x" * 100, f"{PRICE}?country=", f"{PRICE}?max_prcie=3",
    f"{PRICE}?points=5&points=7", f"{PRICE}?" + "&".join(f"p{i}=1" for i in range(300)),
    f"/v1/predict-price/{CODE}?num_price_bins=5&points=7", f"/v1/predict-price/{CODE}?unitprice_min=x",
    "/v1/products?verbose=1", f"/v1/products/{CODE}/lineage?x=1", "/v1/stats?x=1", "/v1/products/..%2F..%2Fetc/price",
    "/v1/products/85123A%3Bls/price", "/v1/products/85-123A/price", "/v1/products/%00/price",
    "/v1/products/" + "A" * 1024 + "/price", "/v1/products/99999/price", "/v1/products/99999/lineage",
    "/v1/nothing",
]


def test_http(project: Path) -> None:
    client = app_client(project)
    failed = []
    for url in HTTP:
        response = client.get(url)
        problems = []
        if response.status_code >= 500:
            problems.append(f"{response.status_code}")
        if response.status_code < 400:
            problems.append(f"wrong success ({response.status_code})")
        if response.content_type != "application/problem+json":
            problems.append(f"content type {response.content_type}")
        record("HTTP", url[:80], problems)
        if problems:
            failed.append((url[:120], problems, response.get_data(as_text=True)[:300]))
    for method, body in (("post", None), ("put", None), ("delete", None), ("patch", None), ("post", "{}")):
        response = getattr(client, method)(PRICE, data=body)
        # 405, or 400 for a body on any method: refused before the method is looked at
        problems = [] if response.status_code in (400, 405) else [f"{method} answered {response.status_code}"]
        record("HTTP", f"{method.upper()} {PRICE}{' with a body' if body else ''}", problems)
        failed.extend([(method, problems, "")] if problems else [])
    response = client.get(PRICE, data="{}")
    record("HTTP", f"GET {PRICE} with a body", [] if response.status_code == 400 else [f"{response.status_code}"])
    assert not failed, failed


# --------------------------------------------------------------------------------------------- damaged files


def _edit_json(path: Path, change: Callable[[Any], Any]) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def _set(key: str, value: Any) -> Callable[[Any], Any]:
    def change(record: dict) -> dict:
        node = record
        *parents, leaf = key.split("/")
        for name in parents:
            node = node[name]
        if value is DELETE:
            del node[leaf]
        else:
            node[leaf] = value
        return record
    return change


DELETE = object()


def _history(change: Callable[[dict], dict]) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        path = root / "registry" / CODE / "history.jsonl"
        lines = path.read_text().splitlines()
        lines[-1] = json.dumps(change(json.loads(lines[-1])))
        path.write_text("\n".join(lines) + "\n")
    return damage


def _served(change: Callable[[Any], Any]) -> Callable[[Path], None]:
    return lambda root: _edit_json(root / "registry" / CODE / "served.json", change)


def _truncate(relpath: str) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        path = root / relpath.format(code=CODE)
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    return damage


def _other_products_state(root: Path) -> None:
    mine = root / "registry" / CODE / "state.json"
    other = json.loads((root / "registry" / OTHER / "state.json").read_text())
    other["stockcode"] = CODE
    mine.write_text(json.dumps(other))


def _corrupt_cached(name: str) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        from pricetrail.registry import artifacts, records

        served = records.served_model(root, CODE)
        assert served is not None
        path = artifacts.local_sources(root)[0].locate(served.artifacts[name].md5)
        assert path is not None
        path.chmod(0o644)
        path.write_bytes(b"x" * path.stat().st_size)

    return damage


def _garbage(relpath: str, text: str) -> Callable[[Path], None]:
    return lambda root: (root / relpath).write_text(text)


# damage -> whether /price of the damaged product must be refused (the damage reaches what a price is made of)
DAMAGES: list[tuple[str, Callable[[Path], None], bool]] = [
    ("served.json truncated", _truncate("registry/{code}/served.json"), True),
    ("served.json version an int", _served(_set("version", 12345678)), True),
    ("served.json without verdict", _served(_set("verdict", DELETE)), True),
    ("served.json verdict.checks a string", _served(_set("verdict/checks", "all passed")), True),
    ("served.json verdict.promoted 'yes'", _served(_set("verdict/promoted", "yes")), True),
    ("served.json a metric as text", _served(_set("metrics/test_rmsle", "0.5")), True),
    ("served.json price_range [0, 1e300]", _served(_set("price_range/registered", [0, 1e300])), True),
    ("served.json of another product", _served(_set("stockcode", OTHER)), True),
    ("served.json a JSON list", _served(lambda record: [record]), True),
    ("served.json artifacts without model.pt", _served(_set("artifacts/model.pt", DELETE)), True),
    ("served.json model.pt md5 not hex", _served(_set("artifacts/model.pt/md5", "../../etc/passwd")), True),
    ("history line without version", _history(_set("version", DELETE)), False),
    ("history line with an unknown action", _history(_set("action", "promotedd")), False),
    ("history line time an int", _history(_set("time", 17)), False),
    ("history line not JSON", _garbage(f"registry/{CODE}/history.jsonl", "{not json\n"), False),
    ("state.json naming another product's history", _other_products_state, True),
    ("state.json truncated", _truncate("registry/{code}/state.json"), True),
    ("drift_reference.json kind unknown", lambda root: _edit_json(root / "registry" / CODE / "drift_reference.json",
                                                                 _set("kind", "whatever")), False),
    ("drift_reference.json artifact md5 missing", lambda root: _edit_json(
        root / "registry" / CODE / "drift_reference.json", _set("artifact/md5", DELETE)), False),
    ("a cached serving.json corrupted, same size", _corrupt_cached("serving.json"), True),
    # The router prices the exported numbers: a damaged checkpoint costs the pipeline, never a served price.
    ("a cached model.pt corrupted, same size", _corrupt_cached("model.pt"), False),
    ("dvc.lock not YAML", _garbage("dvc.lock", "stages: [\n"), False),
    ("stockcodes.yaml not YAML", _garbage("stockcodes.yaml", "stockcodes: {\n"), True),
    ("params.yaml not YAML", _garbage("params.yaml", "recommend: [\n"), False),  # the server reads no params
]


def observe(root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
            price_refused: bool) -> dict[str, list[str]]:
    """Every command and endpoint a user would reach for, on the damaged project: no traceback, no 500 (a 503
    naming the product is the designed answer to a damaged artifact), the listing still lists."""
    found: dict[str, list[str]] = {}
    for argv in (["status"], ["history", CODE], ["recommend", CODE, "--date", "2011-11-14"], ["rollback", CODE],
                 ["promote", "--stockcode", CODE], ["lineage", "fleet"]):
        problems, _ = cli_outcome(root, argv, capsys, expect_refusal=False, monkeypatch=monkeypatch)
        found[" ".join(argv)] = problems
    try:
        client = app_client(root)
    except (ConfigError, ValueError) as error:  # the server refuses to start: one line, as a CLI would say it
        found["serve"] = [] if "\n" not in str(error) else ["multi-line refusal"]
        return found
    for url in ("/v1/products", f"{PRICE}?date=2011-11-14", f"/v1/products/{CODE}/lineage"):
        response = client.get(url)
        problems = [f"{response.status_code}"] if response.status_code >= 500 and response.status_code != 503 else []
        if url == "/v1/products" and response.status_code != 200:
            problems.append(f"listing {response.status_code}")
        if url.startswith(PRICE) and price_refused and response.status_code == 200:
            problems.append("priced from the damaged record")
        found[url] = problems
    return found


def test_damaged_files(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    failed = []
    for name, damage, price_refused in DAMAGES:
        root = clone_project(project, tmp_path / name.replace(" ", "-").replace("/", "-"))
        damage(root)
        for where, problems in observe(root, capsys, monkeypatch, price_refused).items():
            record("damaged files", f"{name} -> {where}", problems)
            if problems:
                failed.append((name, where, problems))
        shutil.rmtree(root)
    assert not failed, failed


# --------------------------------------------------------------------------------------------- params and YAML


def _drift(root: Path) -> None:
    from pricetrail.gates.drift import DriftSettings

    DriftSettings.from_params(section(load_params(root), "data_drift_check"))


def _etl(root: Path) -> None:
    from pricetrail.data.etl import CleaningRules

    CleaningRules.from_params(section(load_params(root), "etl"))


def _preprocess(root: Path) -> None:
    from pricetrail.data.preprocess import PreprocessSettings

    PreprocessSettings.from_params(section(load_params(root), "preprocess"))


def _risk(root: Path) -> None:
    import pandas as pd

    from pricetrail.gates.fairness import fairness_checks
    from pricetrail.gates.risk import risk_checks

    settings = section(load_params(root), "assess_model_risk")
    test = pd.DataFrame({"y_true": [1.0, 2.0, 1.5, 0.5], "y_pred": [1.1, 1.9, 1.4, 0.6],
                         "is_registered": [True, False, True, False]})
    risk_checks(test, baseline_quantity=2.0, min_improvement=settings["min_improvement_over_baseline"])
    fairness_checks(test, sensitive=settings["sensitive_feature"], max_mae_difference=settings["max_mae_difference"],
                    max_mean_outcome_difference=settings["max_mean_outcome_difference"],
                    min_group_size=settings["min_group_size"], scale=settings["fairness_scale"])


PARAMS: list[tuple[str, Any, Callable[[Path], None]]] = [
    ("data_drift_check.num_threshold", float("nan"), _drift), ("data_drift_check.num_threshold", float("inf"), _drift),
    ("data_drift_check.num_threshold", -1, _drift), ("data_drift_check.num_threshold", 0, _drift),
    ("data_drift_check.cat_threshold", "x", _drift), ("data_drift_check.cat_threshold", True, _drift),
    ("data_drift_check.drift_share", 0, _drift), ("data_drift_check.drift_share", 2, _drift),
    ("data_drift_check.drift_share", float("nan"), _drift), ("data_drift_check.on_drift", "maybe", _drift),
    ("data_drift_check.current_window_days", 0, _drift), ("data_drift_check.current_window_days", 1.5, _drift),
    ("data_drift_check.reference_window_days", True, _drift),
    ("data_drift_check.numerical_columns", ["invoice_date"], _drift), ("data_drift_check.typo_key", 1, _drift),
    ("etl.min_rows", 0, _etl), ("etl.min_rows", True, _etl), ("etl.min_rows", "x", _etl),
    ("etl.outlier_median_factor", 1, _etl), ("etl.outlier_median_factor", float("nan"), _etl),
    ("etl.volume_tier_min_discount", 1, _etl), ("etl.volume_tier_min_discount", float("nan"), _etl),
    ("etl.typo_key", 1, _etl), ("preprocess.validation_fraction", 0.6, _preprocess),
    ("preprocess.validation_fraction", float("nan"), _preprocess), ("preprocess.min_split_rows", 0, _preprocess),
    ("preprocess.categorical_features", ["unit_price"], _preprocess), ("preprocess.typo_key", 1, _preprocess),
    ("assess_model_risk.min_improvement_over_baseline", 1.5, _risk),
    ("assess_model_risk.min_improvement_over_baseline", float("nan"), _risk),
    ("assess_model_risk.max_mae_difference", -1, _risk), ("assess_model_risk.max_mae_difference", float("nan"), _risk),
    ("assess_model_risk.max_mean_outcome_difference", float("inf"), _risk),
    ("assess_model_risk.min_group_size", 0, _risk), ("assess_model_risk.min_group_size", True, _risk),
    ("assess_model_risk.fairness_scale", "vibes", _risk),
]


def refusal_problems(call: Callable[[], Any], naming: tuple[str, ...] = ()) -> list[str]:
    """What is wrong with how ``call`` refuses its bad input: it should raise our one-line ValueError (naming one of
    ``naming``, when given), nothing else, and never succeed."""
    try:
        result = call()
    except ValueError as error:
        problems = [] if not naming or any(name in str(error) for name in naming) else [
            f"message names none of {naming}: {error}"]
        return problems + (["more than one line"] if "\n" in str(error) else [])
    except Exception as error:  # noqa: BLE001 - anything but our one-line error is the finding
        return [f"{type(error).__name__}: {error}"]
    return [f"wrong success: {str(result)[:80]}"]


def test_params(project: Path, tmp_path: Path) -> None:
    failed = []
    pristine = (project / "params.yaml").read_text()
    for key, value, load in PARAMS:
        root = tmp_path / "params"
        root.mkdir(exist_ok=True)
        (root / "params.yaml").write_text(pristine)
        *parents, leaf = key.split(".")
        set_params(root, {key: value}) if leaf != "typo_key" else set_params(root, {}) or _add_key(root, key, value)
        problems = refusal_problems(lambda root=root, load=load: load(root), naming=(leaf, str(value)))
        record("params", f"{key}={value!r}", problems)
        if problems:
            failed.append((key, value, problems))
    assert not failed, failed


def _add_key(root: Path, key: str, value: Any) -> None:
    from ruamel.yaml import YAML

    yaml = YAML()
    path = root / "params.yaml"
    params = yaml.load(path)
    sect, leaf = key.split(".")
    params[sect][leaf] = value
    with path.open("w") as handle:
        yaml.dump(params, handle)


YAML_KEYS = ["1e5", "NO", "yes", "0123", "0o12", "12:30", "~", "true", "1.0", '""', '"../x"', '"a b"',
             '"x;rm -rf ~"', '"85123A\\n"', "[1, 2]", '"ÄBC"']


def test_yaml_keys(tmp_path: Path) -> None:
    failed = []
    for key in YAML_KEYS:
        (tmp_path / "stockcodes.yaml").write_text(f"stockcodes:\n  {key}: {{description: x}}\n")
        problems = refusal_problems(lambda: load_stockcodes(tmp_path))
        record("YAML keys", f"stockcodes.yaml key {key}", problems)
        if problems:
            failed.append((key, problems))
    assert not failed, failed


def test_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs last in this module: the audit's table (``pytest -s`` shows it)."""
    counts = Counter((kind, outcome == "clean") for kind, _, outcome in OUTCOMES)
    kinds = sorted({kind for kind, _, _ in OUTCOMES})
    with capsys.disabled():
        print("\n| class | inputs | clean | failed |\n|---|---|---|---|")  # noqa: T201
        for kind in kinds:
            print(f"| {kind} | {counts[(kind, True)] + counts[(kind, False)]} | {counts[(kind, True)]} | "  # noqa: T201
                  f"{counts[(kind, False)]} |")
        for kind, what, outcome in OUTCOMES:
            if outcome != "clean":
                print(f"  {kind}: {what!r}: {outcome}")  # noqa: T201
    assert len({what for kind, what, _ in OUTCOMES if kind != "damaged files"}) + len(DAMAGES) >= 150
