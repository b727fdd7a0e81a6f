"""The module map holds: no import cycle (imports inside functions count), nothing imports the commands,
and the leaves import nothing above them."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gantrain"
LEAVES = {"errors", "version", "losses", "models", "data", "metrics", "checkpoint", "config", "distributed", "stats",
          "translation_models", "translation_data", "augment", "sngan_models"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """gantrain modules a file imports anywhere (top level, inside functions, under TYPE_CHECKING too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    type_checking: set[int] = set()  # imports under TYPE_CHECKING count too: a cycle there is still a cycle
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("gantrain"):
                target = node.module[len("gantrain."):] if node.module != "gantrain" else ""
            else:
                continue
            for alias in node.names:  # `from . import x` may import the submodule x
                candidate = f"{target}.{alias.name}" if target else alias.name
                found.add(candidate if (PACKAGE / f"{candidate.replace('.', '/')}.py").exists()
                          or (PACKAGE / candidate.replace(".", "/")).is_dir() else target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("gantrain."):
                    found.add(alias.name[len("gantrain."):])
    return {m for m in found if m and m != name}


GRAPH = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py") if "configs" not in p.parts}


def test_no_import_cycle():
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(GRAPH.get(node, ())):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt in GRAPH and state.get(nxt) is None:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(GRAPH):
        if state.get(node) is None:
            visit(node)
    assert "loop" in GRAPH and "games.gan" in GRAPH  # the walk saw the package


def test_nothing_imports_the_commands():
    assert [m for m, deps in GRAPH.items() if "cli" in deps] == []


def test_leaves_import_only_leaves():
    for leaf in LEAVES:
        assert GRAPH[leaf] <= LEAVES, f"{leaf} imports {GRAPH[leaf] - LEAVES}"


def test_the_loop_knows_no_generator_or_discriminator():
    assert GRAPH["loop"] & {"models", "losses", "games.gan", "build"} == set()
    tree = ast.parse((PACKAGE / "loop.py").read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    words = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, ast.arg):
            words.add(node.arg)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words.update(node.value.replace(".", " ").split())
    assert "game" in words  # the walk saw the code
    for word in ("G", "D", "generator", "discriminator", "n_critic", "ema", "fake", "real"):
        assert word not in words, word


def test_a_bug_in_a_network_constructor_keeps_its_traceback(tmp_path, monkeypatch):
    """Only what a user's config causes becomes a one-line config error; a bug in a class surfaces as itself."""
    import gantrain
    from gantrain import models

    def broken(self, *args, **kwargs):
        raise ZeroDivisionError("a bug in the constructor")

    monkeypatch.setattr(models.DCGANGenerator, "__init__", broken)
    cfg = gantrain.compose(["dataset=digits", "trainer.device=cpu", "trainer.steps=1"])
    with pytest.raises(ZeroDivisionError, match="a bug in the constructor"):
        gantrain.train(cfg, tmp_path / "run")


def test_a_game_with_other_network_names_gets_its_own_statistic_names():
    """grad/NAME and lr/NAME for networks other than the generator and discriminator (g and d stay as they were),
    and the divergence guard watches them."""
    import torch
    from torch import nn

    from gantrain.games import Game
    from gantrain.periodic import DivergenceCheck
    from gantrain.stats import Stats

    game = Game(Stats(torch.device("cpu")))
    encoder, critic = nn.Linear(2, 2), nn.Linear(2, 1)
    game.set_networks({"encoder": encoder, "critic": critic})
    game.optimizers = {"encoder": torch.optim.SGD(encoder.parameters(), lr=0.1),
                       "critic": torch.optim.SGD(critic.parameters(), lr=0.2)}
    assert game.gradient_stats() == ("grad/encoder", "grad/critic")
    assert game.learning_rates() == {"lr/critic": 0.2, "lr/encoder": 0.1}
    guard = DivergenceCheck(1)
    assert "grad/critic" in guard.problem((), {"grad/critic": float("inf")}, 5, game.gradient_stats())
    classic = Game(Stats(torch.device("cpu")))
    classic.set_networks({"generator": encoder, "discriminator": critic})
    classic.optimizers = {"generator": torch.optim.SGD(encoder.parameters(), lr=0.1),
                          "discriminator": torch.optim.SGD(critic.parameters(), lr=0.2)}
    assert classic.gradient_stats() == ("grad/g", "grad/d") and set(classic.learning_rates()) == {"lr/g", "lr/d"}
