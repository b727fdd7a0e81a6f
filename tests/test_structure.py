"""The package layout and the rule of its imports: commands -> api -> training -> eval -> nets, data -> leaves.

A module never imports one of a layer above its own (imports inside functions and under TYPE_CHECKING count
too, so no import dodges a cycle by hiding in a function), nets and data never import each other, nothing
imports the commands, there is no import cycle, and the flat list of modules is gone: only the leaves and the
api sit at the top."""
import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gantrain"
#: the layers, lowest first; a module may import its own layer's modules and those of lower layers
LAYERS = {"leaves": 0, "data": 1, "nets": 1, "eval": 2, "training": 3, "api": 4, "commands": 5, "": 6}
LEAVES = {"checkpoint", "config", "errors", "version", "overrides", "moved", "tokens"}
FOLDERS = {"commands", "training", "nets", "data", "eval"}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    """The layer of a module name under gantrain ('' for the package itself)."""
    top = module.split(".")[0]
    if module == "":
        return ""
    if top in LEAVES:
        return "leaves"
    if top == "api" or top in FOLDERS:
        return top
    raise AssertionError(f"gantrain.{module} is in no layer: put it in one of {sorted(FOLDERS)} or make it a leaf")


def imports_of(path: Path, root: Path = PACKAGE) -> set[str]:
    """gantrain modules a file (of the package at root) imports anywhere (top level, inside functions, under
    TYPE_CHECKING too)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module == "gantrain" or node.module.startswith("gantrain.")):
                target = node.module[len("gantrain."):] if node.module != "gantrain" else ""
            else:
                continue
            for alias in node.names:  # `from . import x` may import the submodule x
                candidate = f"{target}.{alias.name}" if target else alias.name
                found.add(candidate if (root / f"{candidate.replace('.', '/')}.py").exists()
                          or (root / candidate.replace(".", "/")).is_dir() else target)
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
    assert "training.loop" in GRAPH and "training.games.gan" in GRAPH  # the walk saw the package


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import of graph that goes up a layer, or sideways into another folder of the same layer."""
    wrong = []
    for module, deps in sorted(graph.items()):
        here = layer(module)
        for dep in sorted(deps):
            there = layer(dep)
            if LAYERS[there] > LAYERS[here] or (LAYERS[there] == LAYERS[here] and there != here):
                wrong.append(f"gantrain.{module} ({here or 'package'}) imports gantrain.{dep} ({there})")
    return wrong


def test_imports_flow_down_the_layers():
    assert violations(GRAPH) == []


def test_the_rule_catches_an_import_hidden_in_a_function(tmp_path):
    """A leaf importing training inside a function, and nets importing data (sideways), are both caught."""
    planted = tmp_path / "gantrain" / "config.py"
    planted.parent.mkdir()
    planted.write_text("def f():\n    from gantrain.training import losses\n    return losses\n")
    deps = imports_of(planted, tmp_path / "gantrain")
    assert deps == {"training"} or deps == {"training.losses"}, deps
    assert violations({"config": deps}) != []
    assert violations({"nets.dcgan": {"data.images"}}) == ["gantrain.nets.dcgan (nets) imports gantrain.data.images (data)"]
    assert violations({"training.loop": {"data.images", "eval.metrics", "config"}}) == []


def test_nothing_imports_the_commands():
    assert [m for m, deps in GRAPH.items() if any(layer(d) == "commands" for d in deps)
            and layer(m) != "commands"] == []


def test_one_folder_per_layer_and_only_leaves_at_the_top():
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top == LEAVES | {"api"}, top
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert folders == FOLDERS
    for folder in FOLDERS:  # each says in its docstring what lives there and what it may import
        doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text()))
        assert doc and "import" in doc, folder


def test_the_console_scripts_live_in_commands():
    import tomllib

    scripts = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"gantrain", "gantrain-eval", "gantrain-classifier", "gantrain-sample", "gantrain-export",
                            "gantrain-translate", "gantrain-report", "gantrain-project",
                            "gantrain-directions"}
    for script, entry in scripts.items():
        module, _, function = entry.partition(":")
        assert module.startswith("gantrain.commands."), script
        assert callable(getattr(importlib.import_module(module), function)), script


def test_the_loop_knows_no_generator_or_discriminator():
    assert GRAPH["training.loop"] & {"nets", "training.losses", "training.games.gan", "training.build"} == set()
    tree = ast.parse((PACKAGE / "training" / "loop.py").read_text())
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
    from gantrain import nets as models

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

    from gantrain.training.games import Game
    from gantrain.training.periodic import DivergenceCheck
    from gantrain.training.stats import Stats

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
