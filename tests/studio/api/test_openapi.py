"""The OpenAPI document is true: schemathesis calls every documented operation on a real
server (admin token) and checks each real response's status, content type and body
against the document. Bounded: a few examples per operation, under a minute."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from studio.api.openapi import build_openapi
from studio.api.routes import api_routes
from tests.studio.api.conftest import ADMIN_TOKEN, Api

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def test_every_route_is_documented_and_every_documented_path_is_routed(api: Api) -> None:
    import re

    documented = set(build_openapi()["paths"])
    patterns = [re.compile(rule[0] + "$") for rule in api_routes(api.services)[:-1]]
    for path in documented:
        concrete = (
            path.replace("{path}", "f/team/x")
            .replace("{id}", "abc")
            .replace("{name}", "team")
            .replace("{token}", "t.s")
            .replace("{kind}", "script")
        )
        assert any(p.match(concrete) for p in patterns), f"{path} is documented but not routed"
    documented_patterns = [
        re.compile("^" + re.sub(r"\{[a-z]+\}", "[^/]+(?:/[^/]+)*", path) + "$")
        for path in documented
    ]
    for rule in api_routes(api.services)[:-1]:
        example = re.sub(r"\(\.\+\)|\(\[\^/\]\+\)", "x", rule[0]).replace("(script|flow)", "script")
        example = example.replace("\\.", ".")
        assert any(p.match(example) for p in documented_patterns), (
            f"{rule[0]} is routed but not documented"
        )


def test_real_responses_conform_to_the_document(api: Api, tmp_path: Path) -> None:
    command = [
        str(SCHEMATHESIS),
        "run",
        f"{api.base}/api/openapi.json",
        "--url",
        api.base,
        "-H",
        f"Authorization: Bearer {ADMIN_TOKEN}",
        "--checks",
        "status_code_conformance,content_type_conformance,response_schema_conformance",
        "--phases",
        "examples,fuzzing",
        "--max-examples",
        "4",
        "--max-time",
        "40",
        "--suppress-health-check",
        "filter_too_much,too_slow",
        "--seed",
        "7",
        "--workers",
        "1",
        "--no-shrink",
        "--generation-database",
        "none",
        "--request-timeout",
        "20",
        "--no-color",
        "--warnings",
        "off",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=170, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
