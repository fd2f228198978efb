"""Where rendered files live under templates/: the one home of the file layout that the renderer, the deploy
command, the pipeline and the tests share.

    templates/bootstrap.yaml, templates/pipeline.yaml        account-level stacks
    templates/<env>/root.yaml                                the environment's root stack
    templates/<env>/root.config.json                         its TemplateConfiguration ({"Parameters", "Tags"})
    templates/<env>/<stack>.yaml                             one per nested stack (relative TemplateURL)
    templates/.adkit-manifest.json                           every rendered path and its SHA-256 (render.write)
"""

from __future__ import annotations

BOOTSTRAP_FILE = "bootstrap.yaml"
PIPELINE_FILE = "pipeline.yaml"
ROOT_FILE = "root.yaml"
MANIFEST_FILE = ".adkit-manifest.json"


def configuration_file(template_file: str) -> str:
    """TemplateConfiguration file beside a template: `root.yaml` -> `root.config.json`."""
    return template_file.removesuffix(".yaml") + ".config.json"


ROOT_CONFIGURATION_FILE = configuration_file(ROOT_FILE)


def environment_file(environment: str, filename: str) -> str:
    """Path of one environment's rendered file relative to templates/: `dev/network.yaml`."""
    return f"{environment}/{filename}"
