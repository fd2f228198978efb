"""Build inputs of the Amplify app shared by the two frontend stacks: the committed build spec, the custom
headers with this environment's CSP sources, and their digest (the branch stack rebuilds when it changes).

Inputs: `amplify/amplify.yml` and `amplify/customHttp.yml` from the repository, and the environment config.
Raises ValueError when the committed CSP lacks a directive the kit extends.
"""

from __future__ import annotations

import hashlib
from functools import cache

import yaml

from generator.config import REPO_ROOT, EnvironmentConfig

AMPLIFY_DIR = REPO_ROOT / "amplify"
BUILD_SPEC_FILE = AMPLIFY_DIR / "amplify.yml"
CUSTOM_HTTP_FILE = AMPLIFY_DIR / "customHttp.yml"
CSP_HEADER = "Content-Security-Policy"


@cache
def build_spec() -> str:
    """The committed build spec, verbatim."""
    return BUILD_SPEC_FILE.read_text()


@cache
def _committed_headers() -> dict:
    return yaml.safe_load(CUSTOM_HTTP_FILE.read_text())


def csp_extra_sources(config: EnvironmentConfig) -> dict[str, list[str]]:
    """Per-environment CSP sources added to the committed policy.

    connect-src: custom-domain origins (a page on www. calling the apex is cross-origin) and the
    region's S3 endpoints, because the browser uploads and downloads content with presigned URLs.
    img-src: the same S3 endpoints, for content shown straight from presigned URLs.
    """
    s3 = ["https://*.s3.amazonaws.com", "https://*.s3.${AWS::Region}.amazonaws.com"]
    origins = config.frontend.custom_domain.origins if config.frontend.custom_domain else []
    return {"connect-src": [*origins, *s3], "img-src": s3}


def _extend_csp(policy: str, extra: dict[str, list[str]]) -> str:
    directives = [d.split() for d in policy.split(";") if d.strip()]
    names = [d[0] for d in directives]
    missing = sorted(set(extra) - set(names))
    if missing:
        raise ValueError(f"{CUSTOM_HTTP_FILE}: {CSP_HEADER} has no directive(s) {missing} to extend")
    for directive in directives:
        for source in extra.get(directive[0], []):
            if source not in directive:
                directive.append(source)
    return "; ".join(" ".join(d) for d in directives)


def custom_headers(config: EnvironmentConfig) -> str:
    """customHttp.yml with this environment's CSP sources added (contains ${AWS::Region}: use in Sub)."""
    data = _committed_headers()
    extra = csp_extra_sources(config)
    rules = []
    for rule in data["customHeaders"]:
        headers = [
            {"key": h["key"],
             "value": _extend_csp(h["value"], extra) if h["key"] == CSP_HEADER else h["value"]}
            for h in rule["headers"]
        ]
        rules.append({"pattern": rule["pattern"], "headers": headers})
    return yaml.safe_dump({"customHeaders": rules}, sort_keys=False, width=4096)


def settings_digest(config: EnvironmentConfig) -> str:
    """Hash of the app-level build inputs; the branch stack rebuilds when it changes."""
    text = "\n".join([build_spec(), custom_headers(config), config.frontend.node_version])
    return hashlib.sha256(text.encode()).hexdigest()
