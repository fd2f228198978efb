"""The reference LangGraph workflow: brief -> concept -> outline (scenes) -> storyboard (one frame per scene).

Three nodes, one model call each, a checkpoint in PostgreSQL after every node (thread_id = run id). Each node
is wrapped by `_step`, which (1) refuses to start a node once the worker is stopping, so a SIGTERM ends the
run between nodes with everything done so far checkpointed, and (2) reports the node's output through
`on_step` (the worker appends it as an idempotent event) before LangGraph checkpoints it. If the process
dies between the two, the node runs again on the next worker and its event is not duplicated.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

from .model import Model, ModelError

STEPS = ("concept", "outline", "storyboard")
MAX_SCENES = 4
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|scene\s*\d+\s*[:.-])\s*", re.IGNORECASE)

OnStep = Callable[[str, dict[str, Any]], Awaitable[None]]


class StoryboardState(TypedDict, total=False):
    brief: str
    concept: str
    scenes: list[str]
    frames: list[dict[str, str]]


class WorkerStopping(Exception):
    """Raised at the start of a node when the worker is stopping; the run resumes from the last checkpoint."""


def _lines(text: str) -> list[str]:
    return [line for line in (_BULLET.sub("", raw).strip() for raw in text.splitlines()) if line]


def build_graph(model: Model, on_step: OnStep, stopping: Callable[[], bool]) -> StateGraph:
    """The uncompiled graph; compile it with a checkpointer. `on_step(step, output)` runs after each node."""

    def _step(name: str, body: Callable[[StoryboardState], Awaitable[dict[str, Any]]]):
        async def node(state: StoryboardState) -> dict[str, Any]:
            if stopping():
                raise WorkerStopping(name)
            output = await body(state)
            await on_step(name, output)
            return output

        node.__name__ = name
        return node

    async def concept(state: StoryboardState) -> dict[str, Any]:
        text = await model.generate("concept", (
            "You are the creative director of an advertising agency. Write the creative concept for a "
            "30-second video ad in one paragraph of at most 80 words. The client's brief:\n" + state["brief"]))
        return {"concept": text}

    async def outline(state: StoryboardState) -> dict[str, Any]:
        text = await model.generate("outline", (
            f"Break this advertising concept into {MAX_SCENES} scenes of a 30-second video. Write one scene per "
            "line, at most 25 words each, without numbering.\nConcept: " + state["concept"]))
        scenes = _lines(text)[:MAX_SCENES]
        if not scenes:
            raise ModelError("outline: the model returned no scenes")
        return {"scenes": scenes}

    async def storyboard(state: StoryboardState) -> dict[str, Any]:
        scenes = state["scenes"]
        text = await model.generate("storyboard", (
            "For each scene below write one storyboard frame: the camera shot, what is seen, any on-screen text. "
            "One line per scene, in the same order, without numbering.\nScenes:\n" + "\n".join(scenes)))
        frames = _lines(text)
        if len(frames) < len(scenes):
            raise ModelError(f"storyboard: expected {len(scenes)} frames, the model returned {len(frames)}")
        return {"frames": [{"scene": s, "frame": f} for s, f in zip(scenes, frames, strict=False)]}

    graph = StateGraph(StoryboardState)
    previous = START
    for name, body in zip(STEPS, (concept, outline, storyboard), strict=True):
        graph.add_node(name, _step(name, body))
        graph.add_edge(previous, name)
        previous = name
    graph.add_edge(previous, END)
    return graph
