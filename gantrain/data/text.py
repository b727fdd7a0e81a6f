"""The captions of image folders (metadata.jsonl, or one .txt beside each image). Tokens: gantrain.tokens; the
offline captioned sets: gantrain.data.captions."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from gantrain.errors import GantrainError

# ---------------------------------------------------------------------------------------------
# Captions of image folders


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # a byte-order mark (as some editors save) is not text
    except UnicodeDecodeError:
        raise GantrainError(f"{path} is not UTF-8 text; save its captions as UTF-8") from None


def folder_captions(root: Path, files: Sequence[Path]) -> tuple[list[list[str]], int]:
    """The captions of each file below root, and how many files have none.

    Read from root/metadata.jsonl (lines {"file_name": path relative to root, "text": a caption or a list of
    them}; several lines may name one file) and from a .txt beside an image (same stem; one caption per
    non-empty line). Both may be present: a file gets every caption either gives.
    """
    found: dict[str, list[str]] = {}
    meta = root / "metadata.jsonl"
    if meta.is_file():
        for number, line in enumerate(_read(meta).splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                name, text = entry["file_name"], entry["text"]
            except (ValueError, KeyError, TypeError):
                raise GantrainError(f"{meta} line {number} is not a JSON object with file_name and text: "
                                    f"{line.strip()[:60]}") from None
            texts = text if isinstance(text, list) else [text]
            if not all(t is None or isinstance(t, (str, int, float)) and not isinstance(t, bool) for t in texts):
                raise GantrainError(f"{meta} line {number}: text must be a caption or a list of captions (strings), "
                                    f"not {json.dumps(text, ensure_ascii=False)[:60]}")
            found.setdefault(Path(str(name)).as_posix(), []).extend(
                str(t) for t in texts if t is not None and str(t).strip())
    known = {f.relative_to(root).as_posix() for f in files}
    strays = sorted(name for name in found if name not in known)
    if strays and len(strays) < len(found):  # (none found at all: the caller says so)
        import logging

        logging.getLogger("gantrain").warning(
            "%d file name(s) in %s match no image read below %s (%s%s): their captions are not used; file_name is "
            "the path relative to that folder", len(strays), meta, root, ", ".join(strays[:3]),
            ", ..." if len(strays) > 3 else "")
    out, missing = [], 0
    for f in files:
        captions = list(found.get(f.relative_to(root).as_posix(), []))
        side = f.with_suffix(".txt")
        if side.is_file():
            captions += [line.strip() for line in _read(side).splitlines() if line.strip()]
        missing += not captions
        out.append(captions)
    return out, missing
