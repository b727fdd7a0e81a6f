"""Reading a command line's overrides the way Hydra will, and saying in one line what it cannot use.

Hydra reports an unknown option of a config group, a word that is not an override or a value its
grammar cannot read in 5-20 lines (or a lexer traceback); `check_overrides` says the same in one line
with the fix. Used by the `gantrain` command and by `gantrain.compose`.
"""
from __future__ import annotations

import difflib
from importlib import resources
from typing import Any, Optional, Sequence

from gantrain.errors import GantrainError

#: flags of Hydra's command line that take a value (the word after them is not an override)
FLAGS_WITH_VALUE = ("--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                    "--config-dir", "-cd", "--experimental-rerun")
#: flags whose value is optional (--info [all|config|defaults|...])
FLAGS_WITH_OPTIONAL_VALUE = {"--info": ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath"),
                             "-i": ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")}


def override_words(args: Sequence[str]) -> list[str]:
    """The words of a command line that are overrides (Hydra's flags and their values left out)."""
    words, skip = [], False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg in FLAGS_WITH_VALUE:
            skip = True
        elif arg in FLAGS_WITH_OPTIONAL_VALUE:
            skip = i + 1 < len(args) and args[i + 1] in FLAGS_WITH_OPTIONAL_VALUE[arg]
        elif arg.startswith("-"):
            continue
        else:
            words.append(arg)
    return words


def group_options(group: str) -> Optional[list[str]]:
    """The options of a config group (`loss`, `hydra/launcher`), or None when `group` is not one of gantrain's."""
    folder = resources.files("gantrain.configs")
    for part in group.split("/"):
        folder = folder / part
    if not folder.is_dir():
        return None
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _quoted_example(word: str) -> str:
    key, _, value = word.partition("=")
    return f"\"{key}='{value}'\"" if "'" not in value else f"'{key}=\"{value}\"'"


def parse(word: str) -> Any:
    """One override parsed by Hydra's grammar; GantrainError with the fix when it cannot be read."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        return OverridesParser.create().parse_overrides([word])[0]
    except OverrideParseException as exc:
        if "=" not in word and not word.startswith("~"):
            raise GantrainError(f"'{word}' is not an override: give key=value (e.g. loss=hinge, trainer.steps=100); "
                                f"`gantrain --help` lists the groups and keys") from None
        if not word.isascii() or "LexerNoViableAlt" in str(exc):
            raise GantrainError(f"cannot read {word}: quote a value with spaces, non-ASCII letters or special "
                                f"characters, e.g. {_quoted_example(word)}") from None
        detail = next((line.strip() for line in str(exc).splitlines()
                       if line.strip() and not line.startswith(("See ", "Error parsing override"))), "")
        raise GantrainError(f"cannot read {word}{f' ({detail})' if detail else ''}: see `gantrain --help` for the "
                            f"form key=value; quote values with special characters, e.g. {_quoted_example(word)}") from None


def check_group_choice(group: str, choice: str) -> None:
    """GantrainError naming the valid options (and the nearest) when `choice` is not an option of `group`."""
    options = group_options(group)
    if options is None or choice in options or choice in ("null", "None"):
        return
    near = difflib.get_close_matches(choice, options, n=1)
    hint = f"; did you mean {group}={near[0]}?" if near else ""
    raise GantrainError(f"{group}={choice} is not an option of {group}: choose one of {', '.join(options)}{hint}")


def check_overrides(args: Sequence[str]) -> None:
    """Refuse, in one line each, what Hydra would report over many: a word that is not an override, a value its
    grammar cannot read, an unknown option of a config group (also among a sweep's values)."""
    for word in override_words(args):
        override = parse(word)
        group = override.key_or_group
        if override.is_delete() or group.startswith("hydra") or group_options(group) is None:  # plugins add hydra's
            continue
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        for value in values:
            if isinstance(value, str):
                check_group_choice(group, value)


def check_roots(words: Sequence[str]) -> None:
    """GantrainError naming the nearest valid key when an override's first key is not one of gantrain's."""
    from gantrain.config import TOP_LEVEL_KEYS

    roots = sorted(TOP_LEVEL_KEYS | {"experiment", "hparams_search", "model"})
    for word in words:
        if word.startswith(("+", "~")) or word.startswith("hydra"):
            continue
        root = word.split("=", 1)[0].split(".")[0].split("/")[0]
        if "=" in word and not word.split("=", 1)[0].strip():
            raise GantrainError(f"{word} has no key before '='; write key=value, e.g. trainer.steps=1000")
        if root not in roots:
            owners = groups_with_key(root)  # a group's key given without its group: direction=BtoA
            near = owners or difflib.get_close_matches(root, roots, n=2)
            hint = f"; did you mean {' or '.join(near)}?" if near else ""
            raise GantrainError(f"unknown key {root}{hint} (`gantrain --help` lists the groups and keys)")


def paths_ending_with(node: Any, key: str, prefix: str = "", depth: int = 2) -> list[str]:
    """The dotted paths below a config node (down to `depth` levels) whose last part is `key`: where a key given
    in the wrong place (trainer.lr, gradient_penalty) lives."""
    from omegaconf import DictConfig

    found = []
    if isinstance(node, DictConfig):
        for k in node.keys():
            path = f"{prefix}{k}"
            if k == key:
                found.append(path)
            elif depth > 1:
                found += paths_ending_with(node._get_node(k), key, f"{path}.", depth - 1)
    return found


def groups_with_key(key: str) -> list[str]:
    """'group.key (in group=option, ...)' for each config group with an option that has `key` at its top (read
    from the YAML files), or a path of the default config ending with it (loss.gradient_penalty): what an unknown
    top-level key most likely meant."""
    found = _group_options_with_key(key)
    if found:
        return found
    try:
        from gantrain.config import hydra_compose

        return [p for p in paths_ending_with(hydra_compose([]), key, depth=3) if "." in p]
    except Exception:  # a hint only
        return []


def _group_options_with_key(key: str) -> list[str]:
    import importlib.resources

    import yaml

    found: dict[str, list[str]] = {}
    try:
        root = importlib.resources.files("gantrain.configs")
        for group in sorted((g for g in root.iterdir() if g.is_dir()), key=lambda g: g.name):
            if group.name in ("experiment", "hparams_search", "hydra") or group.name.startswith("_"):
                continue
            for option in sorted((f for f in group.iterdir() if f.name.endswith(".yaml")), key=lambda f: f.name):
                node = yaml.safe_load(option.read_text())
                if isinstance(node, dict) and key in node:
                    found.setdefault(group.name, []).append(option.name[:-5])
    except Exception:  # a hint only: never in the way of the error it adds to
        return []
    return [f"{g}.{key} (in {', '.join(f'{g}={o}' for o in options[:3])}{', ...' if len(options) > 3 else ''})"
            for g, options in found.items()]
