"""The Lambda deployment template passes the offline CloudFormation validator and keeps its promises: an image
function whose timeout sits between the remote deadline and API Gateway's 29 s, and a role that can only read the
remote's prefix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from pricetrail.serving.config import S3Settings

TEMPLATE = Path(__file__).resolve().parents[2] / "serve" / "template.yaml"


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub) read as plain values."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_scalar(node)
                              if isinstance(node, yaml.ScalarNode) else loader.construct_sequence(node))


def test_the_template_passes_cfn_lint() -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")  # the dev extra's console script, beside this python
    result = subprocess.run([str(cfn_lint), str(TEMPLATE)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_function_times_out_after_the_remote_deadline_and_before_api_gateway() -> None:
    template = yaml.load(TEMPLATE.read_text(), Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    function = template["Resources"]["RouterFunction"]["Properties"]
    deadline = float(function["Environment"]["Variables"]["PRICETRAIL_S3_DEADLINE_SECONDS"])
    assert deadline == S3Settings(url="s3://b/p", cache_dir=Path("/tmp")).deadline_seconds
    assert deadline < function["Timeout"] < 29
    assert function["PackageType"] == "Image" and "ReservedConcurrentExecutions" in function


def test_the_role_can_only_read_the_remotes_prefix() -> None:
    template = yaml.load(TEMPLATE.read_text(), Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    statements = template["Resources"]["RouterFunction"]["Properties"]["Policies"][0]["Statement"]
    actions = {statement["Action"] for statement in statements}
    assert actions == {"s3:GetObject", "s3:ListBucket"}
    assert all(statement["Effect"] == "Allow" and "*" not in statement["Action"] for statement in statements)
    get = next(statement for statement in statements if statement["Action"] == "s3:GetObject")
    assert get["Resource"].endswith("${RemoteBucket}/${RemotePrefix}/*")
    listing = next(statement for statement in statements if statement["Action"] == "s3:ListBucket")
    assert listing["Condition"]["StringLike"]["s3:prefix"] == "${RemotePrefix}/*"
