"""Every stack builder's docstring names the Parameters it takes and the Outputs it gives (issue 16 item 5).

Property test over every environment in config/ plus one config per backend platform none of them uses
(`cfn_helpers.CASE_CONFIGS`), each with workers on and off: a parameter or output a builder adds without
documenting it fails here. Outputs named after the config's own secrets are
covered by naming `naming.app_secret_output`.
"""

from __future__ import annotations

import functools
import re

import pytest
from cfn_helpers import CASE_CONFIGS

from generator import compose, naming
from generator.config import EnvironmentConfig, parse_environment


def _with_workers(config: EnvironmentConfig, enabled: bool) -> EnvironmentConfig:
    data = config.model_dump(exclude_none=True)
    data["workers"] = {**data.get("workers", {}), "enabled": enabled}
    return parse_environment(data)


VARIANTS = [(case, enabled) for case in CASE_CONFIGS for enabled in (True, False)]


def _builder(build):
    return build.func if isinstance(build, functools.partial) else build


def _mentions(doc: str, name: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", doc) is not None


@pytest.mark.parametrize(("case", "workers"), VARIANTS, ids=[f"{c}-workers-{w}" for c, w in VARIANTS])
def test_builder_docstring_names_every_parameter_and_output(case, workers):
    config = _with_workers(CASE_CONFIGS[case], workers)
    for child in compose.build_children(config):
        builder = _builder(child.spec.build)
        doc = builder.__doc__ or ""
        where = f"{builder.__module__}.{builder.__name__}"
        assert "Parameters:" in doc and "Outputs:" in doc and "Raises:" in doc, (
            f"{where} docstring lacks a Parameters/Outputs/Raises section")
        # Names derived from the config's own secrets cannot be listed: the docstring names the function instead.
        secret_names = {naming.app_secret_output(secret) for secret in config.backend.secrets}
        missing = [name for name in [*child.template.parameters, *child.template.outputs]
                   if not (_mentions(doc, name)
                           or (name in secret_names and _mentions(doc, "naming.app_secret_output")))]
        assert not missing, f"{where} docstring does not name {missing}"


def test_word_match_is_whole_word():
    assert _mentions("Parameters: OpsKeyArn, AppId.", "AppId")
    assert not _mentions("Parameters: AppIds", "AppId")
    assert not _mentions("Parameters: OpsKeyArn", "KeyArn")
