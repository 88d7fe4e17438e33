"""``clir-ot study``: run (or resume, or plan) a study from a YAML config."""
from __future__ import annotations

import argparse
from dataclasses import replace

from clir_ot.cli.arguments import input_file, output_dir, positive_int
from clir_ot.errors import ConfigError
from clir_ot.study.config import EXECUTOR_KINDS, LOCAL_EXECUTOR, ExecutorSettings, check_executor, load_study_config
from clir_ot.study.runner import plan_study, run_study, write_report
from clir_ot.study.schedule import check_jobs


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "study", help="run a study (backbones x methods x languages x folds) with cached, resumable steps",
        description="Plan every step of the study as an artifact keyed by its inputs under runs/<name>/artifacts, "
        "build the missing ones (a killed study resumes where it stopped), evaluate and write results.csv, "
        "report.md and plots. Bad configs are rejected before any work starts. Every step is built under its "
        "artifact's lock, so several studies (or cluster jobs) on one folder share the work.",
    )
    parser.add_argument("--config", required=True, type=input_file, help="study YAML, e.g. tools/studies/xquad-scaling-offline.yaml")
    parser.add_argument("--output", default=None, type=output_dir, help="study folder (default runs/<name>)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan: cached steps and the work left")
    parser.add_argument("--jobs", type=positive_int, default=1,
                        help="steps built in parallel processes on this machine (default 1; executor local only)")
    parser.add_argument("--executor", choices=EXECUTOR_KINDS, default=None,
                        help="where steps run: local (this machine), slurm (one job per step through submitit), "
                        "submitit-local / submitit-debug (submitit's jobs here); default: the config's executor.kind")
    parser.add_argument("--slurm-partition", default=None, metavar="PARTITION",
                        help="Slurm partition of the jobs (overrides executor.partition)")
    parser.add_argument("--report-only", action="store_true", help="evaluate what is finished; build nothing")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}")
    if args.executor is not None:  # before the config is read
        check_jobs(args.jobs, ExecutorSettings(kind=args.executor))
    config = load_study_config(args.config)
    executor = config.executor
    if args.executor is not None:  # local leaves the config's submitit settings unused
        executor = ExecutorSettings() if args.executor == LOCAL_EXECUTOR else replace(executor, kind=args.executor)
    if args.slurm_partition is not None:
        executor = replace(executor, partition=args.slurm_partition)
    if executor != config.executor:
        config = replace(config, executor=check_executor(executor, "clir-ot study --executor/--slurm-partition"))
    check_jobs(args.jobs, config.executor)  # also for --dry-run, which builds no executor
    if args.report_only:
        write_report(plan_study(config, args.output))
        return 0
    run_study(config, args.output, jobs=args.jobs, dry_run=args.dry_run)
    return 0

