"""A script's dependencies: inferred from its imports, or declared in a block.

Windmill's conventions: the imports of a script say what it needs, mapped from module
names to PyPI distributions (`import yaml` needs `pyyaml`). A `# requirements:` comment
block or a PEP 723 `# /// script` block, when present, replaces the inference entirely,
so a user can always pin or correct what the inference got wrong.

Everything here is pure: no file is read except to check whether an imported name is a
sibling module of the script, and nothing touches the network.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

from kernels.errors import EnvironmentBuildError, ScriptError

__all__ = [
    "MODULE_DISTRIBUTIONS",
    "canonical_requirements",
    "declared_requirements",
    "infer_requirements",
    "normalize_name",
    "requirement_name",
]

# fmt: off
# Top-level module name -> PyPI distribution, only where the two differ beyond PEP 503
# normalisation (`import requests` needs no entry). Namespace packages whose distribution
# depends on deeper components (google.cloud.*, azure.*) are in _NAMESPACE_* below.
MODULE_DISTRIBUTIONS: Mapping[str, str] = MappingProxyType({
    "AppKit": "pyobjc", "Bio": "biopython", "Crypto": "pycryptodome",
    "Cryptodome": "pycryptodomex", "Foundation": "pyobjc", "MySQLdb": "mysqlclient",
    "OpenGL": "pyopengl", "OpenSSL": "pyopenssl", "PIL": "pillow", "Quartz": "pyobjc",
    "RPi": "rpi-gpio", "Xlib": "python-xlib", "_cffi_backend": "cffi",
    "absl": "absl-py", "alsaaudio": "pyalsaaudio", "apiclient": "google-api-python-client",
    "argon2": "argon2-cffi", "atlassian": "atlassian-python-api", "attr": "attrs",
    "aws_cdk": "aws-cdk-lib", "barcode": "python-barcode", "binance": "python-binance",
    "bluetooth": "pybluez", "board": "adafruit-blinka", "bs4": "beautifulsoup4",
    "cairo": "pycairo", "can": "python-can", "cassandra": "cassandra-driver",
    "community": "python-louvain", "consul": "python-consul",
    "corsheaders": "django-cors-headers", "crispy_forms": "django-crispy-forms",
    "cv2": "opencv-python", "dateutil": "python-dateutil",
    "debug_toolbar": "django-debug-toolbar", "decouple": "python-decouple",
    "discord": "discord-py", "django_filters": "django-filter", "dns": "dnspython",
    "docx": "python-docx", "dotenv": "python-dotenv", "editor": "python-editor",
    "elasticapm": "elastic-apm", "engineio": "python-engineio",
    "environ": "django-environ", "facebook": "facebook-sdk", "factory": "factory-boy",
    "faiss": "faiss-cpu", "ffmpeg": "ffmpeg-python", "fitz": "pymupdf", "fpdf": "fpdf2",
    "gflags": "python-gflags", "gi": "pygobject", "git": "gitpython",
    "github": "pygithub", "gitlab": "python-gitlab", "gnupg": "python-gnupg",
    "googleapiclient": "google-api-python-client", "gridfs": "pymongo",
    "grpc": "grpcio", "grpc_tools": "grpcio-tools", "haiku": "dm-haiku",
    "ignite": "pytorch-ignite", "jenkins": "python-jenkins", "jnius": "pyjnius",
    "jose": "python-jose", "jwt": "pyjwt", "kafka": "kafka-python",
    "kerberos": "pykerberos", "keystone": "keystone-engine", "ldap": "python-ldap",
    "libfuturize": "future", "magic": "python-magic", "markdown_it": "markdown-it-py",
    "memcache": "python-memcached", "mpl_toolkits": "matplotlib",
    "multipart": "python-multipart", "nacl": "pynacl", "newspaper": "newspaper3k",
    "nmap": "python-nmap", "odf": "odfpy", "onelogin": "python3-saml",
    "osgeo": "gdal", "paddle": "paddlepaddle", "past": "future", "patoolib": "patool",
    "pdfminer": "pdfminer-six", "pkg_resources": "setuptools", "pptx": "python-pptx",
    "presto": "presto-python-client", "psycopg2": "psycopg2-binary",
    "pwn": "pwntools", "pythoncom": "pywin32", "pythonjsonlogger": "python-json-logger",
    "pywintypes": "pywin32", "pyximport": "cython", "rapidjson": "python-rapidjson",
    "rest_framework": "djangorestframework", "rtmidi": "python-rtmidi",
    "saml2": "pysaml2", "serial": "pyserial", "shapefile": "pyshp",
    "skimage": "scikit-image", "sklearn": "scikit-learn", "skvideo": "scikit-video",
    "slack": "slackclient", "slugify": "python-slugify", "smb": "pysmb",
    "smbclient": "smbprotocol", "snap7": "python-snap7", "snappy": "python-snappy",
    "socketio": "python-socketio", "socks": "pysocks", "sockshandler": "pysocks",
    "sonnet": "dm-sonnet", "speech_recognition": "speechrecognition",
    "telebot": "pytelegrambotapi", "telegram": "python-telegram-bot",
    "tree": "dm-tree", "umap": "umap-learn", "usb": "pyusb", "vlc": "python-vlc",
    "weaviate": "weaviate-client", "web": "web-py", "whois": "python-whois",
    "wikipediaapi": "wikipedia-api", "win32api": "pywin32", "win32com": "pywin32",
    "win32con": "pywin32", "win32gui": "pywin32", "winrm": "pywinrm",
    "wx": "wxpython", "yaml": "pyyaml", "yara": "yara-python", "z3": "z3-solver",
    "zmq": "pyzmq",
})

# Namespace packages: a dotted prefix -> its distribution, longest prefix first wins.
_NAMESPACE_DISTRIBUTIONS: Mapping[str, str] = MappingProxyType({
    "google.protobuf": "protobuf", "google.auth": "google-auth",
    "google.oauth2": "google-auth", "google.api_core": "google-api-core",
    "google.api": "googleapis-common-protos", "google.rpc": "googleapis-common-protos",
    "google.type": "googleapis-common-protos", "google.genai": "google-genai",
    "google.generativeai": "google-generativeai", "google.ads": "google-ads",
    "google.cloud.sql.connector": "cloud-sql-python-connector",
    "google.cloud.secretmanager": "google-cloud-secret-manager",
    "google.cloud.exceptions": "google-cloud-core", "google.cloud.client": "google-cloud-core",
    "snowflake.connector": "snowflake-connector-python",
    "snowflake.snowpark": "snowflake-snowpark-python",
    "databricks.sql": "databricks-sql-connector", "databricks.sdk": "databricks-sdk",
    "mysql.connector": "mysql-connector-python", "ruamel.yaml": "ruamel-yaml",
    "paho.mqtt": "paho-mqtt", "opentelemetry.trace": "opentelemetry-api",
})

# Namespace prefixes whose distribution is named after the first N dotted components,
# joined with '-' (`google.cloud.storage` -> google-cloud-storage).
_NAMESPACE_DEPTHS: Mapping[str, int] = MappingProxyType({
    "google.cloud": 3, "google.analytics": 3, "azure": 2, "azure.storage": 3,
    "azure.keyvault": 3, "azure.mgmt": 3, "azure.data": 3, "azure.ai": 3,
    "azure.monitor": 3, "azure.search": 3, "azure.communication": 3,
    "azure.messaging": 3, "opentelemetry": 2, "opentelemetry.exporter": 3,
    "opentelemetry.instrumentation": 3,
})
# fmt: on

# Provided by the platform inside every run, never installed from PyPI.
_PLATFORM_MODULES = frozenset({"gristmill", "wmill"})

_API_VERSION = re.compile(r"_v\d+(?:(?:alpha|beta|p)\d*)*$")

# A loose PEP 508 shape: name, optional extras, then a version specifier or a direct
# URL, then an optional marker. uv does the strict check; this one exists so that a
# typo is reported with its line and so that nothing option-like (`--index-url x`)
# ever reaches uv's command line.
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_ONE_VERSION = r"(?:~=|===|==|!=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+"
_REQUIREMENT = re.compile(
    rf"(?P<name>{_NAME})"
    rf"(?P<rest>(?:\s*\[\s*(?:{_NAME}(?:\s*,\s*{_NAME})*)?\s*\])?"
    rf"(?:\s*@\s*\S+|\s*\(?\s*{_ONE_VERSION}(?:\s*,\s*{_ONE_VERSION})*\s*\)?)?"
    r"(?:\s*;\s*\S.*)?)"
)
_REQUIREMENTS_HEADER = re.compile(r"#\s*requirements:\s*", re.IGNORECASE)
# From PEP 723 ("Reference implementation"), verbatim.
_PEP723_BLOCK = re.compile(
    r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$"
)
_TOML_LINE = re.compile(r"at line (\d+)")


def normalize_name(name: str) -> str:
    """The PEP 503 normalised form of a distribution name (`Foo_Bar` -> `foo-bar`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(text: str) -> str:
    """The normalised distribution name of a requirement string.

    Raises `EnvironmentBuildError` when `text` is not shaped like a requirement.
    """
    match = _REQUIREMENT.fullmatch(text.strip())
    if match is None:
        raise EnvironmentBuildError(
            f"not a valid requirement: {text.strip()!r}; expected a package name with an "
            "optional version, e.g. 'pandas' or 'pandas>=2,<3'"
        )
    return normalize_name(match["name"])


def canonical_requirements(requirements: Iterable[str]) -> list[str]:
    """Validate, strip, de-duplicate and sort requirement strings.

    Duplicates are found by PEP 503 name and whitespace-free constraint, so `Requests`
    and `requests` are one entry; a bare name is dropped when the same name also comes
    with a constraint or extras (the constrained entry installs it anyway). Entries of
    one name with different constraints are all kept: uv intersects them.
    """
    by_key: dict[tuple[str, str], str] = {}
    for raw in requirements:
        text = raw.strip()
        name = requirement_name(text)
        match = _REQUIREMENT.fullmatch(text)
        assert match is not None  # requirement_name has just checked it
        by_key.setdefault((name, re.sub(r"\s+", "", match["rest"])), text)
    constrained = {name for name, rest in by_key if rest}
    kept = [(key, text) for key, text in by_key.items() if key[1] or key[0] not in constrained]
    return [text for _, text in sorted(kept, key=lambda item: (item[0][0], item[1]))]


def infer_requirements(source: str, path: str = "") -> list[str]:
    """The requirements of a script: declared in a block if it has one, else inferred.

    A `# requirements:` block or a PEP 723 `# /// script` block replaces inference
    entirely, even when empty. Otherwise every import in the file counts (inside
    functions and `try` blocks too) except the stdlib, relative imports, the platform's
    own client (`gristmill`, `wmill`) and, when `path` is given, modules that sit next to
    the script (`NAME.py` or a `NAME/` directory). The result is sorted and de-duplicated.

    Raises `EnvironmentBuildError` for a malformed declared requirement (naming its line)
    and `ScriptError` when the source cannot be parsed.
    """
    declared = declared_requirements(source)
    if declared is not None:
        return declared
    try:
        tree = ast.parse(source, filename=path or "<script>")
    except SyntaxError as error:
        raise ScriptError(
            f"cannot read the imports: {error.msg}", path=path, line=error.lineno
        ) from error
    here = Path(path).parent if path else None
    distributions: list[str] = []
    for dotted in _imported_modules(tree):
        top = dotted.split(".", 1)[0]
        if top in sys.stdlib_module_names or top in _PLATFORM_MODULES or top == "__future__":
            continue
        if here is not None and ((here / f"{top}.py").is_file() or (here / top).is_dir()):
            continue
        distribution = _distribution(dotted)
        if distribution is not None:
            distributions.append(distribution)
    return canonical_requirements(distributions)


def declared_requirements(source: str) -> list[str] | None:
    """The requirements declared in a script's blocks, or None when it declares none.

    Both block kinds may appear; their entries are combined. Raises
    `EnvironmentBuildError` naming the line of a malformed entry.
    """
    # PEP 723's regex expects '\n' line ends; a file saved on Windows must match too.
    source = source.replace("\r\n", "\n")
    found: list[tuple[str, int]] | None = None
    for block in (_requirements_block(source), _pep723_block(source)):
        if block is not None:
            found = (found or []) + block
    if found is None:
        return None
    for text, line in found:
        try:
            requirement_name(text)
        except EnvironmentBuildError as error:
            raise EnvironmentBuildError(f"line {line}: {error}") from None
    return canonical_requirements(text for text, _ in found)


def _requirements_block(source: str) -> list[tuple[str, int]] | None:
    """Entries (text, 1-based line) of a Windmill `# requirements:` block, if any."""
    lines = source.split("\n")
    index = next(
        (i for i, line in enumerate(lines) if _REQUIREMENTS_HEADER.fullmatch(line.strip())), None
    )
    if index is None:
        return None
    entries: list[tuple[str, int]] = []
    for number, line in enumerate(lines[index + 1 :], start=index + 2):
        stripped = line.strip()
        if not stripped.startswith("#"):
            break
        # pip's rule for comments: ` #` starts one, a '#' inside a URL fragment does not.
        text = re.split(r"\s+#", stripped[1:], maxsplit=1)[0].strip()
        if not text:
            break
        entries.append((text, number))
    return entries


def _pep723_block(source: str) -> list[tuple[str, int]] | None:
    """Entries (text, 1-based line) of `dependencies` in a PEP 723 `script` block."""
    blocks = [m for m in _PEP723_BLOCK.finditer(source) if m["type"] == "script"]
    if not blocks:
        return None
    first_line = source.count("\n", 0, blocks[0].start()) + 1
    if len(blocks) > 1:
        second = source.count("\n", 0, blocks[1].start()) + 1
        raise EnvironmentBuildError(
            f"line {second}: a second '# /// script' block (the first is at line "
            f"{first_line}); PEP 723 allows one, merge them"
        )
    block = blocks[0]
    raw_lines = block["content"].splitlines()
    content = "".join(
        (line[2:] if line.startswith("# ") else line[1:]) + "\n" for line in raw_lines
    )
    try:
        metadata = tomllib.loads(content)
    except tomllib.TOMLDecodeError as error:
        where = _TOML_LINE.search(str(error))
        line = first_line + int(where[1]) if where else first_line
        raise EnvironmentBuildError(
            f"line {line}: the '# /// script' block is not valid TOML: {error}"
        ) from None
    dependencies = metadata.get("dependencies", [])
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise EnvironmentBuildError(
            f"line {first_line}: 'dependencies' in the '# /// script' block must be a list "
            f"of strings, got {dependencies!r}"
        )
    entries: list[tuple[str, int]] = []
    for dependency in dependencies:
        # The line that spells the entry, so an error can point at it.
        offset = next((i for i, line in enumerate(raw_lines) if dependency in line), -1)
        entries.append((dependency, first_line + 1 + offset if offset >= 0 else first_line))
    return entries


def run_imports(source: str) -> tuple[str, ...] | None:
    """The modules running `source` will import, in order, once each: `x.y` for
    `import x.y`, `a` for `from a import b` (b is taken for an attribute: a submodule
    imported that way is not seen), and `asyncio` when it has async code (an async
    `main` runs under asyncio.run). None when it cannot be parsed. The host sends a run
    to the lean zygote only if that one has all of these loaded (execution.fits_lean)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif isinstance(node, _ASYNC_NODES):
            names.append("asyncio")
    return tuple(dict.fromkeys(names))


_ASYNC_NODES = (ast.AsyncFunctionDef, ast.Await, ast.AsyncFor, ast.AsyncWith)


def _imported_modules(tree: ast.AST) -> list[str]:
    """Dotted names of every absolute import in `tree`, in source order.

    `from a.b import c` yields `a.b.c`: for namespace packages (`from google.cloud import
    storage`) the imported name is what tells the distribution apart.
    """
    modules: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.extend(
                f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*"
            )
            if any(alias.name == "*" for alias in node.names):
                modules.append(node.module)
    return modules


def _distribution(dotted: str) -> str | None:
    """The PyPI distribution that provides the module `dotted`, or None if unknowable."""
    parts = dotted.split(".")
    for size in range(len(parts), 1, -1):
        prefix = ".".join(parts[:size])
        if prefix in _NAMESPACE_DISTRIBUTIONS:
            return _NAMESPACE_DISTRIBUTIONS[prefix]
    for size in range(len(parts), 0, -1):
        depth = _NAMESPACE_DEPTHS.get(".".join(parts[:size]))
        if depth is not None:
            if len(parts) < depth:
                return None  # `import google.cloud` alone names no distribution
            # google.cloud.pubsub_v1 is in google-cloud-pubsub: drop the API version.
            parts[depth - 1] = _API_VERSION.sub("", parts[depth - 1])
            return normalize_name("-".join(parts[:depth]))
    top = parts[0]
    if top == "google":
        return None  # `import google` alone is ambiguous between dozens of packages
    return MODULE_DISTRIBUTIONS.get(top) or normalize_name(top)
