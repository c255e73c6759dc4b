"""Requirements of a script: inference from imports and the two override blocks."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kernels.errors import EnvironmentBuildError, ScriptError
from kernels.requirements import (
    MODULE_DISTRIBUTIONS,
    canonical_requirements,
    infer_requirements,
    normalize_name,
    requirement_name,
)


def infer(source: str, path: str = "") -> list[str]:
    return infer_requirements(textwrap.dedent(source), path)


def test_stdlib_future_and_platform_modules_need_nothing() -> None:
    source = """
        from __future__ import annotations
        import os, sys, json, asyncio.subprocess
        from collections import OrderedDict
        from xml.etree import ElementTree
        import tomllib
        import wmill
        from gristmill import get_variable

        def main() -> None: ...
    """
    assert infer(source) == []


def test_empty_script() -> None:
    assert infer_requirements("") == []


def test_imports_anywhere_count() -> None:
    source = """
        import requests
        try:
            import ujson as json
        except ImportError:
            import json

        if False:
            from rich import print

        class Runner:
            def go(self) -> None:
                import numpy as np

        def main() -> None:
            def inner() -> None:
                from pandas.io import sql
            with open("x") as f:
                import httpx.auth
    """
    assert infer(source) == ["httpx", "numpy", "pandas", "requests", "rich", "ujson"]


def test_submodules_and_aliases_map_to_top_level() -> None:
    source = """
        import matplotlib.pyplot as plt
        import a.b.c
        from x.y import z as w
    """
    assert infer(source) == ["a", "matplotlib", "x"]


def test_relative_and_star_imports() -> None:
    source = """
        from . import helpers
        from .util import thing
        from ..pkg import other
        from tqdm import *
    """
    assert infer(source) == ["tqdm"]


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("import yaml", "pyyaml"),
        ("from PIL import Image", "pillow"),
        ("from sklearn.linear_model import Ridge", "scikit-learn"),
        ("import cv2", "opencv-python"),
        ("from bs4 import BeautifulSoup", "beautifulsoup4"),
        ("from dateutil import parser", "python-dateutil"),
        ("from dotenv import load_dotenv", "python-dotenv"),
        ("import jwt", "pyjwt"),
        ("import psycopg2.extras", "psycopg2-binary"),
        ("import MySQLdb", "mysqlclient"),
        ("from Crypto.Cipher import AES", "pycryptodome"),
        ("from OpenSSL import crypto", "pyopenssl"),
        ("import magic", "python-magic"),
        ("import docx", "python-docx"),
        ("from pptx import Presentation", "python-pptx"),
        ("import serial", "pyserial"),
        ("import usb.core", "pyusb"),
        ("import zmq", "pyzmq"),
        ("import attr", "attrs"),
        ("import git", "gitpython"),
        ("from google.cloud import storage", "google-cloud-storage"),
        ("from google.cloud.storage import Client", "google-cloud-storage"),
        ("import google.cloud.bigquery", "google-cloud-bigquery"),
        ("from google.cloud import pubsub_v1", "google-cloud-pubsub"),
        ("from google.cloud import bigquery_storage_v1beta2", "google-cloud-bigquery-storage"),
        ("from google.cloud import secretmanager", "google-cloud-secret-manager"),
        ("from google.protobuf import json_format", "protobuf"),
        ("import google.auth", "google-auth"),
        ("from google.oauth2 import service_account", "google-auth"),
        ("from google import genai", "google-genai"),
        ("from googleapiclient.discovery import build", "google-api-python-client"),
        ("from azure.identity import DefaultAzureCredential", "azure-identity"),
        ("from azure.storage.blob import BlobServiceClient", "azure-storage-blob"),
        ("import snowflake.connector", "snowflake-connector-python"),
        ("from opentelemetry import trace", "opentelemetry-api"),
        ("from opentelemetry.sdk.trace import TracerProvider", "opentelemetry-sdk"),
        ("import mysql.connector", "mysql-connector-python"),
        ("import Some_Thing", "some-thing"),
    ],
)
def test_module_to_distribution(statement: str, expected: str) -> None:
    assert infer_requirements(statement) == [expected]


def test_bare_google_namespace_is_not_guessed() -> None:
    assert infer_requirements("import google\nimport google.cloud\n") == []


def test_mapping_table_is_large_read_only_and_only_lists_mismatches() -> None:
    assert len(MODULE_DISTRIBUTIONS) >= 80
    with pytest.raises(TypeError):
        MODULE_DISTRIBUTIONS["yaml"] = "other"  # type: ignore[index]
    # An entry that normalisation alone would produce is dead weight.
    assert all(normalize_name(m) != d for m, d in MODULE_DISTRIBUTIONS.items())


def test_one_distribution_for_many_modules() -> None:
    source = "import win32api\nimport win32con\nimport pythoncom\nimport yaml\nimport YAML\n"
    assert infer_requirements(source) == ["pywin32", "pyyaml", "yaml"]


def test_sibling_modules_and_packages_are_local(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("")
    (tmp_path / "shared").mkdir()
    script = tmp_path / "job.py"
    source = "import helpers\nfrom shared.db import connect\nimport requests\n"
    assert infer_requirements(source, str(script)) == ["requests"]
    # Without a path nothing is known to be local.
    assert infer_requirements(source) == ["helpers", "requests", "shared"]


def test_requirements_block_replaces_inference() -> None:
    source = """
        # requirements:
        # pandas==2.2.3
        # requests>=2  # pinned for the proxy
        # Requests>=2

        import numpy
        import yaml
    """
    assert infer(source) == ["pandas==2.2.3", "requests>=2"]


def test_requirements_block_ends_at_empty_comment_or_code() -> None:
    source = """
        import numpy
        #requirements:
        #six
        #
        # not a requirement, just prose
    """
    assert infer(source) == ["six"]
    assert infer("# requirements:\n# six\nimport numpy\n# numpy\n") == ["six"]


def test_empty_requirements_block_means_none() -> None:
    assert infer("# requirements:\nimport numpy\n") == []
    assert infer("# requirements:\n#\nimport numpy\n") == []


def test_pep723_block_replaces_inference() -> None:
    source = """
        # /// script
        # requires-python = ">=3.11"
        # dependencies = [
        #   "httpx>=0.27",
        #   "rich[jupyter]",
        #   'tomli; python_version < "3.11"',
        # ]
        # ///
        import numpy
    """
    assert infer(source) == ["httpx>=0.27", "rich[jupyter]", 'tomli; python_version < "3.11"']


def test_pep723_block_without_dependencies_and_crlf() -> None:
    source = '# /// script\r\n# requires-python = ">=3.11"\r\n# ///\r\nimport numpy\r\n'
    assert infer_requirements(source) == []


def test_pep723_other_block_types_are_ignored() -> None:
    source = '# /// pyproject\n# name = "x"\n# ///\nimport numpy\n'
    assert infer_requirements(source) == ["numpy"]


def test_both_blocks_combine() -> None:
    source = '# requirements:\n# six\n\n# /// script\n# dependencies = ["attrs"]\n# ///\n'
    assert infer_requirements(source) == ["attrs", "six"]


def test_malformed_requirement_line_names_text_and_line() -> None:
    source = "import os\n# requirements:\n# pandas==2.2.3\n# not a requirement\n"
    with pytest.raises(EnvironmentBuildError, match=r"line 4: .*'not a requirement'"):
        infer_requirements(source)


@pytest.mark.parametrize("line", ["--index-url http://x", "-e .", "pandas===", "pandas 2"])
def test_option_like_or_broken_lines_are_refused(line: str) -> None:
    with pytest.raises(EnvironmentBuildError, match="line 2"):
        infer_requirements(f"# requirements:\n# {line}\n")


def test_malformed_pep723_dependency_names_its_line() -> None:
    source = '\n# /// script\n# dependencies = [\n#   "ok",\n#   "bad one",\n# ]\n# ///\n'
    with pytest.raises(EnvironmentBuildError, match=r"line 5: .*'bad one'"):
        infer_requirements(source)


def test_pep723_invalid_toml_names_its_line() -> None:
    source = "import os\n# /// script\n# dependencies = [\n#   'six',\n#   nope\n# ]\n# ///\n"
    with pytest.raises(EnvironmentBuildError, match=r"line 5: .*not valid TOML"):
        infer_requirements(source)


def test_pep723_dependencies_must_be_strings() -> None:
    with pytest.raises(EnvironmentBuildError, match="list of strings"):
        infer_requirements("# /// script\n# dependencies = [1]\n# ///\n")


def test_two_pep723_script_blocks_are_refused() -> None:
    block = '# /// script\n# dependencies = ["six"]\n# ///\n'
    with pytest.raises(EnvironmentBuildError, match="line 5: a second"):
        infer_requirements(block + "\n" + block)


def test_syntax_error_is_a_script_error_with_line() -> None:
    with pytest.raises(ScriptError) as caught:
        infer_requirements("import os\ndef main(:\n", "job.py")
    assert caught.value.line == 2
    assert "job.py" in str(caught.value)


def test_canonical_requirements_dedupes_by_normalised_name() -> None:
    got = canonical_requirements(
        [" Requests ", "requests", "Foo_Bar>=1", "foo-bar >= 1", "zope.interface", "six", "six<2"]
    )
    # First spelling wins; a bare name goes when the same name comes constrained.
    assert got == ["Foo_Bar>=1", "Requests", "six<2", "zope.interface"]
    assert canonical_requirements(["Requests", "requests"]) == ["Requests"]


def test_canonical_requirements_keeps_distinct_constraints_and_markers() -> None:
    got = canonical_requirements(["numpy<2; python_version<'3.9'", "numpy>=2", "numpy"])
    assert got == ["numpy<2; python_version<'3.9'", "numpy>=2"]


@pytest.mark.parametrize(
    "text",
    [
        "six",
        "six==1.16.0",
        "pandas>=2,<3",
        "pandas (>=2)",
        "requests[socks,security]>=2.31",
        'tomli; python_version < "3.11"',
        "pkg @ https://example.org/pkg-1.0.tar.gz",
        "zope.interface~=6.0",
        "torch==2.3.0+cpu",
    ],
)
def test_requirement_shapes_accepted(text: str) -> None:
    assert requirement_name(text)


def test_normalize_name() -> None:
    assert normalize_name("Foo__Bar.baz-Qux") == "foo-bar-baz-qux"
