"""Pure facts about a dependency graph given as ``{node_id: [dependency ids]}``.

Used by the ``Plan`` validator and by the executor; imports nothing from this package, so the
contracts can depend on it without a cycle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Graph = Mapping[str, Sequence[str]]


def find_cycle(graph: Graph) -> list[str] | None:
    """Return one cycle as ``[a, b, ..., a]`` (each depends on the next), or None if the graph is acyclic.

    Iterative three-colour DFS, so a 10,000-node chain does not hit the recursion limit.
    Dependencies on unknown ids are ignored here (the caller reports them separately).
    """
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    for root in graph:
        if colour[root] != white:
            continue
        path: list[str] = [root]
        iters = [iter(graph[root])]
        colour[root] = grey
        while iters:
            advanced = False
            for dep in iters[-1]:
                state = colour.get(dep)
                if state is None or state == black:
                    continue
                if state == grey:
                    start = path.index(dep)
                    return [*path[start:], dep]
                colour[dep] = grey
                path.append(dep)
                iters.append(iter(graph[dep]))
                advanced = True
                break
            if not advanced:
                colour[path.pop()] = black
                iters.pop()
    return None


def topological_order(graph: Graph) -> list[str]:
    """Return the ids so that every node comes after its dependencies (Kahn; stable in input order)."""
    remaining = {node: len(set(deps)) for node, deps in graph.items()}
    dependents = dependents_of(graph)
    ready = [node for node, count in remaining.items() if count == 0]
    order: list[str] = []
    while ready:
        node = ready.pop()
        order.append(node)
        for child in dependents[node]:
            remaining[child] -= 1
            if remaining[child] == 0:
                ready.append(child)
    if len(order) != len(graph):
        raise ValueError("graph has a cycle")
    return order


def dependents_of(graph: Graph) -> dict[str, list[str]]:
    """Invert the edges: for each node, the nodes that depend on it directly."""
    out: dict[str, list[str]] = {node: [] for node in graph}
    for node, deps in graph.items():
        for dep in dict.fromkeys(deps):
            out[dep].append(node)
    return out


def descendants(graph: Graph, node: str) -> set[str]:
    """Every node that depends on ``node`` directly or transitively."""
    children = dependents_of(graph)
    seen: set[str] = set()
    stack = list(children[node])
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(children[current])
    return seen


def downstream_lengths(graph: Graph, weight: Mapping[str, float] | None = None) -> dict[str, float]:
    """For each node, the heaviest path from it to a sink, itself included (critical-path priority).

    With no weights every node counts 1, so a sink has length 1.
    """
    children = dependents_of(graph)
    length: dict[str, float] = {}
    for node in reversed(topological_order(graph)):
        own = 1.0 if weight is None else weight[node]
        length[node] = own + max((length[c] for c in children[node]), default=0.0)
    return length


def critical_path_length(graph: Graph, weight: Mapping[str, float] | None = None) -> float:
    """The heaviest source-to-sink path (in nodes, or in the given weights)."""
    if not graph:
        return 0.0
    return max(downstream_lengths(graph, weight).values())
