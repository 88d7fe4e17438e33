"""Building a study's unfinished steps: which step may start, and where it runs.

:func:`build_pending` hands every step whose upstream artifacts are finished to an executor -- this
process (``--jobs 1``), a pool of processes (``--jobs N``), or submitit (one Slurm job per step, or
its local and debug executors) -- and waits for them. Keys do not depend on the executor, and every
step is built under its artifact's lock (:mod:`clir_ot.study.locks`), so several studies, workers or
jobs on one folder share the work: a step another worker is building is left to it and its artifact
reused once finished; a step whose owner died is taken over and resumed.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Protocol

from clir_ot.errors import ConfigError, ConsistencyError
from clir_ot.study.config import DEFAULT_TIMEOUT_MIN, ExecutorSettings
from clir_ot.study.locks import ArtifactLock, lock_path
from clir_ot.study.plan import Step, StudyPlan

__all__ = ["BuildStep", "build_pending", "check_jobs", "make_executor", "step_lock"]

logger = logging.getLogger(__name__)

#: ``build(config_path, root, step_id, threads, torchrun) -> step_id``: builds one step under its lock
#: (:func:`clir_ot.study.runner.run_step_by_id`); picklable, so that processes and jobs can run it.
BuildStep = Callable[[str, str, str, "int | None", bool], str]


def step_lock(step: Step) -> ArtifactLock:
    """The lock of a step's artifact (steps without an artifact are inputs and need none)."""
    return ArtifactLock(lock_path(step.artifact.folder))


class Handle(Protocol):
    def done(self) -> bool: ...
    def result(self) -> Any: ...


class StepExecutor(Protocol):
    """Where steps run: ``capacity`` at once, each submitted as ``build(...)``."""

    capacity: int
    poll_s: float

    def submit(self, build: BuildStep, plan: StudyPlan, step: Step) -> Handle: ...
    def describe(self, step: Step, handle: Handle) -> str: ...
    def close(self) -> None: ...


def _args(plan: StudyPlan, step: Step) -> tuple[str, str, str]:
    return str(Path(plan.config.path).resolve()), str(plan.root.resolve()), step.id


class InProcess:
    """``--jobs 1``: each step in this process, one after another, by ``build_here(step)`` (the study's
    own plan, not one read again from the config file)."""

    capacity, poll_s = 1, 0.5

    def __init__(self, build_here: Callable[[Step], Any]):
        self.build_here = build_here

    def submit(self, build: BuildStep, plan: StudyPlan, step: Step) -> Handle:
        future: Future = Future()
        try:
            future.set_result(self.build_here(step))
        except Exception as err:  # noqa: BLE001 -- re-raised by result()
            future.set_exception(err)
        return future

    def describe(self, step: Step, handle: Handle) -> str:
        return f"step {step.id}"

    def close(self) -> None:
        pass


class LocalProcesses:
    """``--jobs N``: steps in N spawned processes, the CPU's threads split between them."""

    poll_s = 0.5

    def __init__(self, jobs: int):
        self.capacity = jobs
        self.threads = max(1, (os.cpu_count() or 1) // jobs)
        self.pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, build: BuildStep, plan: StudyPlan, step: Step) -> Handle:
        return self.pool.submit(build, *_args(plan, step), self.threads, False)

    def describe(self, step: Step, handle: Handle) -> str:
        return f"step {step.id}"

    def close(self) -> None:
        self.pool.shutdown(wait=True)


SUBMITIT_CLUSTERS = {"slurm": "slurm", "submitit-local": "local", "submitit-debug": "debug"}


class Submitit:
    """One submitit job per step (Slurm, or submitit's local / debug executor)."""

    def __init__(self, settings: ExecutorSettings, folder: Path, study: str):
        try:
            # submitit is an optional dependency (the `slurm` extra): imported only when asked for
            import submitit
        except ImportError:
            raise ConfigError(f"executor {settings.kind} needs submitit: pip install 'clir_ot[slurm]' "
                              "(or pip install submitit)") from None
        self.capacity, self.poll_s = settings.max_jobs, settings.poll_s
        self.study = study
        self.folder = Path(settings.logs) if settings.logs else folder
        try:
            self.executor = submitit.AutoExecutor(folder=self.folder, cluster=SUBMITIT_CLUSTERS[settings.kind])
        except RuntimeError as err:  # submitit's "Could not detect srun"
            raise ConfigError(f"executor {settings.kind}: {err} (start the study where sbatch and srun run, e.g. "
                              "a login node; submitit-local tries the same config on this machine)") from None
        generic = {name: getattr(settings, name) for name in ("timeout_min", "cpus_per_task", "gpus_per_node", "mem_gb")}
        if settings.timeout_min is None:
            generic["timeout_min"] = DEFAULT_TIMEOUT_MIN
            logger.info("executor %s: no timeout_min given, each job may run %d minutes (set timeout_min to "
                        "your partition's limit)", settings.kind, DEFAULT_TIMEOUT_MIN)
        slurm = {"slurm_partition": settings.partition, "slurm_account": settings.account, "slurm_qos": settings.qos,
                 "slurm_additional_parameters": dict(settings.additional) or None}
        try:
            self.executor.update_parameters(**{k: v for k, v in {**generic, **slurm}.items() if v is not None})
        except (NameError, AssertionError, ValueError) as err:  # submitit's own checks of its parameters
            raise ConfigError(f"executor {settings.kind}: {err}") from None

    def submit(self, build: BuildStep, plan: StudyPlan, step: Step) -> Handle:
        self.executor.update_parameters(name=f"clir-ot.{self.study}.{step.id.replace('/', '.')}")
        return self.executor.submit(build, *_args(plan, step), None, True)

    def describe(self, step: Step, handle: Handle) -> str:
        return f"step {step.id} (job {handle.job_id}, logs {self.folder})"

    def close(self) -> None:
        pass


def make_executor(settings: ExecutorSettings, jobs: int, root: Path, study: str,
                  build_here: Callable[[Step], Any]) -> StepExecutor:
    """The executor ``settings`` name (``--jobs`` is for this machine: with ``local`` only);
    ``build_here(step)`` builds a step in this process (``--jobs 1``)."""
    check_jobs(jobs, settings)
    if not settings.submitit:
        return InProcess(build_here) if jobs <= 1 else LocalProcesses(jobs)
    return Submitit(settings, root / "submitit", study)


def check_jobs(jobs: int, settings: ExecutorSettings) -> None:
    """``--jobs`` above 1 is for the local executor only (a scheduler's executor has ``max_jobs``)."""
    if jobs > 1 and settings.submitit:
        raise ConfigError(f"--jobs {jobs} runs steps on this machine; with executor {settings.kind} "
                          "set executor.max_jobs (steps queued at once) instead")


def build_pending(plan: StudyPlan, pending: list[Step], executor: StepExecutor, build: BuildStep,
                  progress: Callable[[], None] = lambda: None) -> None:
    """Build ``pending`` (in plan order, each once its upstream artifacts are finished) on ``executor``.

    A step locked by another worker is skipped until it is finished (then reused) or released
    unfinished (then built here, resuming). Raises the first failure: a process pool first lets its
    running steps end; submitit jobs go on (holding their locks) for a later study to reuse.
    """
    waiting = {s.id: s for s in pending}
    running: dict[Any, Step] = {}
    told: set[str] = set()
    try:
        while waiting or running:
            for handle, step in list(running.items()):
                if handle.done():
                    del running[handle]
                    try:
                        handle.result()
                    except Exception:
                        logger.error("%s failed", executor.describe(step, handle))
                        raise
                    progress()
            started, elsewhere = False, []
            for step in list(waiting.values()):
                if step.done:  # built by another worker meanwhile
                    logger.info("step %s: built by another worker; reused", step.id)
                    del waiting[step.id]
                    progress()
                    continue
                if len(running) >= executor.capacity or not all(plan.steps[d].done for d in step.deps):
                    continue
                owner = step_lock(step).holder()
                if owner is not None:
                    elsewhere.append(step)
                    if step.id not in told:
                        logger.info("step %s: being built by %s; left to it", step.id, owner.describe())
                        told.add(step.id)
                    continue
                del waiting[step.id]
                running[executor.submit(build, plan, step)] = step
                started = True
            if started:
                continue
            if not running and not elsewhere and waiting and not _upstream_elsewhere(plan, waiting):
                raise ConsistencyError(f"steps {sorted(waiting)} wait on steps that cannot finish")
            if waiting or running:
                time.sleep(executor.poll_s)
    finally:
        # a pool waits for its running steps; submitit jobs go on, holding their locks, and a study
        # started again waits for them
        executor.close()


def _upstream_elsewhere(plan: StudyPlan, waiting: dict[str, Step]) -> bool:
    """Whether some waiting step's upstream step is being built by another worker."""
    return any(not plan.steps[d].done and plan.steps[d].artifact is not None
               and step_lock(plan.steps[d]).holder() is not None
               for step in waiting.values() for d in step.deps)
