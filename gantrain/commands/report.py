"""`gantrain-report SWEEP_DIR`: the summary tables of a finished (or interrupted) sweep."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from gantrain.commands.sweep import _saved, check_metric, job_rows, natural_direction, report
from gantrain.errors import GantrainError


def report_main(argv: Optional[list[str]] = None) -> None:
    """`gantrain-report SWEEP_FOLDER [optimized_metric=NAME] [direction=maximize|minimize]`: the summary
    table of a sweep (one row per job; mean and std over seeds), written as summary.csv and summary.md."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or any(a in ("-h", "--help") for a in args):
        print(report_main.__doc__)
        sys.exit(0 if args else 2)
    try:
        paths = [a for a in args if "=" not in a]
        options = dict(a.split("=", 1) for a in args if "=" in a)
        unknown = sorted(set(options) - {"optimized_metric", "direction"})
        if len(paths) != 1:
            raise GantrainError("give exactly one sweep folder")
        if unknown:
            raise GantrainError(f"unknown option {unknown[0]}; the options are optimized_metric=NAME and direction=maximize|minimize")
        if options.get("direction", "maximize") not in ("maximize", "minimize"):
            raise GantrainError(f"direction={options['direction']} is not maximize or minimize")
        sweep_dir = Path(paths[0]).expanduser()
        metric = options.get("optimized_metric") or _saved(sweep_dir, "optimized_metric")
        if options.get("optimized_metric"):
            check_metric(job_rows(sweep_dir), options["optimized_metric"], sweep_dir)
        direction = natural_direction(metric, options.get("direction") or _saved(sweep_dir, "hydra.sweeper.direction"))
        text, rows = report(sweep_dir, metric, direction)
    except GantrainError as exc:
        print(f"gantrain-report: error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(text)
    sys.exit(1 if any(r["status"] == "failed" for r in rows) else 0)
