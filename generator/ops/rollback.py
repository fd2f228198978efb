"""`adkit rollback ENV [--to TAG]`: deploy the image that ran before the current one, through the deploy flow.

Where "before" comes from: the push history of the bootstrap ECR repository (imagePushedAt). CloudFormation
keeps no history of a stack's parameter values, and a record written by `adkit deploy` would miss the deploys
the pipeline makes (its CloudFormation action never runs this kit), while every deployed image, from either
path, was pushed to that one repository. The previous tag is the newest image pushed before the deployed one.
That image may never have run in THIS environment (prod only gets approved builds): the command lists the
recent images and the change set shows `ImageTag: <current> → <previous>` before anything runs, and `--to`
names an exact tag.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from generator.contract import IMAGE_TAG_PARAMETER
from generator.deploy import flow, preflight, stacks
from generator.deploy.errors import PreflightRefused, UsageError
from generator.deploy.session import Aws
from generator.deploy.targets import Target, check_image_tag
from generator.deploy.ui import Ui

SHOWN = 5


@dataclass(frozen=True)
class Image:
    tags: tuple[str, ...]
    pushed: datetime


def history(aws: Aws, repository_uri: str) -> list[Image]:
    """Tagged images of the repository, newest push first (DescribeImages)."""
    repository = repository_uri.split("/", 1)[1] if "/" in repository_uri else repository_uri
    paginator = aws.client("ecr").get_paginator("describe_images")
    images = [Image(tuple(sorted(d["imageTags"])), d["imagePushedAt"])
              for page in paginator.paginate(repositoryName=repository, filter={"tagStatus": "TAGGED"})
              for d in page.get("imageDetails", []) if d.get("imageTags")]
    return sorted(images, key=lambda i: (i.pushed, i.tags), reverse=True)


def previous_tag(images: list[Image], current: str) -> str | None:
    """The first tag of the newest image pushed before the image tagged `current` (None: none, or unknown)."""
    for index, image in enumerate(images):
        if current in image.tags:
            older = [i for i in images[index + 1:] if current not in i.tags]
            return older[0].tags[0] if older else None
    return None


def run(aws: Aws, target: Target, ui: Ui, *, to: str | None = None, yes: bool = False) -> int:
    """Find the tag to go back to, then `flow.run` with it (same preflight, change set and confirmations)."""
    if to is not None:
        check_image_tag(to)
    preflight.identity(aws, target)
    stack = stacks.describe(aws, target.stack_name)
    if stack is None:
        raise PreflightRefused(f"{target.stack_name} is not deployed", "there is nothing to roll back",
                               f"deploy it with `{target.cli_name} --image-tag <sha>`")
    current = {p["ParameterKey"]: p.get("ParameterValue") for p in stack.get("Parameters") or []}.get(
        IMAGE_TAG_PARAMETER)
    boot = preflight.bootstrap_outputs(aws, target)
    images = history(aws, boot["EcrRepositoryUri"])
    ui.info(f"Deployed image: {current or 'none'}. Newest images in {boot['EcrRepositoryUri']}:", "bold")
    for image in images[:SHOWN]:
        mark = "  <- deployed" if current in image.tags else ""
        ui.info(f"  {image.pushed:%Y-%m-%d %H:%M} UTC  {', '.join(image.tags)}{mark}")
    if to is None:
        to = previous_tag(images, current or "")
        if to is None:
            why = (f"the deployed tag {current} is not in the repository any more (lifecycle policy)"
                   if current and not any(current in i.tags for i in images)
                   else "no image was pushed before the deployed one")
            raise UsageError(f"no previous image to roll {target.stack_name} back to", why,
                             f"name one: adkit rollback {target.label} --to <tag>")
    if to == current:
        raise UsageError(f"{target.stack_name} already runs {to}", "a rollback to the same tag changes nothing",
                         "name another tag with --to")
    ui.step(f"Rolling {target.stack_name} back: {IMAGE_TAG_PARAMETER} {current} → {to}")
    return flow.run(aws, target, ui, image_tag=to, yes=yes)
