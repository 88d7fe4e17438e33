"""A study as data: backbones x methods x languages x folds x seeds, read from YAML and checked
before any work starts.

Example (``tools/studies/xquad-scaling-offline.yaml`` is the full one)::

    name: xquad-scaling-offline
    baseline: runs/xquad            # collection + first-stage runs of `clir-ot baseline`
    first_stage: e5-small           # the run reranked: run.xquad.<first_stage>.cross.en-<L>.txt
    reranked_run: dense             # or bm25-qt: BM25 in <L> with the <L> question, reranked with the English one
    depth: 10
    languages: [th, hi, el]
    reference_language: en          # reranked with the teacher only, for each language's gap to English
    low_resource: [th, hi, el]
    bitext: {tatoeba: ../shared/data/tatoeba}     # or {files: {th: th.tsv, ...}}, and/or {xquad: {negatives: 3}}
    controls: [shuffled, no-bitext]               # every objective's shuffled-bitext control; the rank term alone
    seeds: [42]
    backbones:                      # smaller to larger
      - {name: e5-small-6l, layers: 6, teachers: runs/xquad-6l}
      - {name: e5-small, teachers: runs/xquad}
    methods: [none, ot, {name: mse-token, languages: [el]}]
    teacher: tools/configs/teacher-xquad-cpu.json    # or a mapping of TrainingConfig settings
    distill: {batch_size: 16, lr: 2e-5, epochs: 1}    # training + distillation settings
    rerank: {batch_size: 32, max_length: 256, dtype: auto}
    measures: [P@5, Success@5, RR@10]                 # the default
    executor: {kind: slurm, partition: gpu, gpus_per_node: 1}   # default: local (this machine)

A backbone of ``kind: bi-encoder`` studies the dense first stage instead of the reranker: its
``none`` is the baseline's dense run (``run.xquad.<first_stage>.cross.en-<L>.txt``), each method
distils a bi-encoder student from the encoder on bitext (no teacher and no folds: the student never
sees XQuAD), and a ``search`` step re-encodes the language's paragraphs with the student and searches
them with the unchanged query encoder (``search: {hits, batch_size, max_length, dtype}``).
``tools/studies/xquad-dense-students.yaml`` is that study (``clir-ot xquad-dense-students``).

``dataset: tatoeba-probe`` studies dense students on the low-resource probe instead of XQuAD
(cross-lingual sentence retrieval on Tatoeba, :mod:`clir_ot.pipelines.tatoeba_probe`): ``baseline`` is
the probe's folder (:class:`~clir_ot.datasets.tatoeba.ProbeLayout`, made by ``tools/tatoeba_probe.py``:
each language's test half as topics / corpus / qrels and its zero-shot run, ``none``);
every backbone is a bi-encoder, every student is distilled on its language's *distillation half*
only (``bitext: {tatoeba: DIR}``; leakage-checked against the test half), and ``search`` must encode
as the zero-shot runs were (checked against the folder's manifest). ``languages`` are any language
codes of the Tatoeba folder. ``tools/studies/tatoeba-probe.yaml`` is that study.

``bitext: {xquad: {negatives: N}}`` is the in-domain query bitext of the baseline's own XQuAD collection
(:func:`clir_ot.distill.xquad_query_bitext`): each student gets the English questions of its fold's
*training* side with their paragraphs in English and in its language (and ``N`` hard negatives from
the first stage), leakage-checked; alone or added to ``tatoeba`` / ``files``. Its pairs carry their
questions, so every method must read them (``mode: query`` or ``score-kd``), checked here.

``controls: [shuffled, no-bitext]`` adds, for every distillation method ``X`` of the grid, its
shuffled-bitext control ``X-shuffled`` (same objective and settings on misaligned pairs), and one
``no-bitext`` control: the same training steps with the ranking term alone (``distill_weight: 0``,
which needs ``rank_weight > 0``). The report says per language whether a method's gain beats both.

``reranked_run: bm25-qt`` puts the card's Pyserini pipeline shape in place of the dense first stage:
the rerank steps read BM25 over the language's paragraphs with the question in that language
(``run.xquad.bm25.mono.<L>-<L>.txt``: XQuAD's human translations stand in for query translation, as
CLIR work uses MT for BM25-QT), and the rerankers score it with the *English* question. Teachers and
students are trained as with ``dense`` (their keys do not change), so a study of the same grid with
``reuse:`` pointing at the dense study's folder reranks BM25-QT with the very same models.

Every mapping rejects unknown keys with the list of known ones.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml
from huggingface_hub import try_to_load_from_cache

from clir_ot.datasets.layout import RERANKED_RUNS, TeacherData
from clir_ot.datasets.xquad import XQUAD_LANGUAGES
from clir_ot.distill.bitext import tatoeba_files
from clir_ot.distill.trainer import DISTILL_METHODS, DistillationConfig, split_settings
from clir_ot.errors import ConfigError, InputFormatError
from clir_ot.evaluation import parse_measure
from clir_ot.formats import read_text
from clir_ot.rerank.windows import check_windows
from clir_ot.languages import resolve_language
from clir_ot.training.trainer import TrainingConfig

__all__ = ["BackboneSpec", "CONTROLS", "EXECUTOR_KINDS", "ExecutorSettings", "MethodSpec", "RerankSettings",
           "SearchSettings", "StudyConfig", "XQuADBitextSettings", "check_executor", "load_study_config",
           "study_config_from_data"]

BASELINE_METHOD = "none"
SHUFFLED_SUFFIX = "-shuffled"
#: The controls a study can add (``controls:``): every objective's shuffled-bitext control, and the
#: ranking term alone for the same steps.
SHUFFLED_CONTROL, NO_BITEXT_CONTROL = "shuffled", "no-bitext"
CONTROLS = (SHUFFLED_CONTROL, NO_BITEXT_CONTROL)
#: The objective named in a no-bitext control's settings: with ``distill_weight: 0`` it is never computed.
NO_BITEXT_OBJECTIVE = "ot"
CROSS_ENCODER, BI_ENCODER = "cross-encoder", "bi-encoder"
BACKBONE_KINDS = (CROSS_ENCODER, BI_ENCODER)
#: The measures of a study unless its config names others (``measures:``).
DEFAULT_MEASURES = ("P@5", "Success@5", "RR@10")
#: What a study evaluates on (``dataset:``): XQuAD (the default), or the Tatoeba sentence-retrieval probe.
XQUAD_DATASET, PROBE_DATASET = "xquad", "tatoeba-probe"
DATASETS = (XQUAD_DATASET, PROBE_DATASET)
DEFAULT_BASES = ("default", "multilingual-e5-small")


def _check_keys(data: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, found {type(data).__name__}")
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")


def _str_list(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: expected a list of names, got {value!r}")
    return list(dict.fromkeys(value))


def _positive_int(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{where} must be a positive integer, got {value!r}")
    return value


def _nonnegative_int(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{where} must be a non-negative integer, got {value!r}")
    return value


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone: a base model (hub name, folder, or ``null`` for the offline default), optionally
    cut to its first ``layers`` layers; ``teachers``: a folder of ``clir-ot xquad-teacher`` outputs
    whose per-fold teachers (and zero-shot reranked runs) the study reuses instead of training.

    ``kind`` is ``cross-encoder`` (the reranker: teachers, cross-fitted students, reranked runs) or
    ``bi-encoder`` (the dense first stage: ``base`` is the encoder of the baseline's dense run, its
    students are searched with the unchanged query encoder; no ``layers`` or ``teachers``). A
    bi-encoder's ``students``: a folder of earlier ``clir-ot xquad-dense-students`` outputs whose
    ``dense-student.<first_stage>.<method>.<L>`` students are reused when their ``training.json``
    records the settings and encoder asked for (otherwise, or when the folder is absent, the study
    trains its own)."""

    name: str
    base: str | None = None
    layers: int | None = None
    teachers: str | None = None
    kind: str = CROSS_ENCODER
    students: str | None = None

    KEYS = ("name", "kind", "base", "layers", "teachers", "students")

    @property
    def dense(self) -> bool:
        return self.kind == BI_ENCODER


@dataclass(frozen=True)
class MethodSpec:
    """One method: ``none`` (the zero-shot teacher), a distillation objective, or ``<objective>-shuffled``
    (the shuffled-bitext control); ``languages`` restricts it to some of the study's languages;
    ``settings`` overrides distillation settings for this method only.

    ``name`` labels the method in runs and tables; ``method`` names the objective when the label is not
    one (a variant such as ``{name: ot-unbalanced, method: ot, settings: {marginal_penalty: 1.0}}``)."""

    name: str
    languages: tuple[str, ...] | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    method: str | None = None
    control: str | None = None  # set by ``controls:``: SHUFFLED_CONTROL or NO_BITEXT_CONTROL

    KEYS = ("name", "method", "languages", "settings")

    @property
    def _base(self) -> str:
        return self.method or self.name

    @property
    def objective(self) -> str | None:
        if self.name == BASELINE_METHOD:
            return None
        if self.rank_only:
            return NO_BITEXT_OBJECTIVE
        return self._base.removesuffix(SHUFFLED_SUFFIX)

    @property
    def rank_only(self) -> bool:
        """The no-bitext control: the ranking term alone (no distillation term is computed)."""
        return self.control == NO_BITEXT_CONTROL

    @property
    def is_control(self) -> bool:
        """A control (shuffled bitext or no bitext), not a method whose gain is read."""
        return self.rank_only or self.shuffled

    @property
    def shuffled(self) -> bool:
        return self._base.endswith(SHUFFLED_SUFFIX)

    @property
    def is_baseline(self) -> bool:
        return self.name == BASELINE_METHOD


@dataclass(frozen=True)
class RerankSettings:
    """How reranking steps score (``rerank:``); part of every rerank step's key. ``windows`` > 1 scores
    a passage that does not fit in up to that many overlapping windows of ``window_overlap`` shared
    tokens and keeps the best (MaxP, :mod:`clir_ot.rerank.windows`)."""

    batch_size: int = 32
    max_length: int = 256
    dtype: str = "auto"
    windows: int = 1
    window_overlap: int = 32

    KEYS = ("batch_size", "max_length", "dtype", "windows", "window_overlap")

    def __post_init__(self) -> None:
        check_windows(self.windows, self.window_overlap)

    def key_settings(self) -> dict[str, Any]:
        """The settings in a rerank step's key: the windows only when they are on, so the keys of
        studies made before windows existed stay as they were."""
        settings = asdict(self)
        if self.windows == 1:
            settings.pop("windows")
            settings.pop("window_overlap")
        return settings


@dataclass(frozen=True)
class XQuADBitextSettings:
    """The in-domain query bitext (``bitext: {xquad: {negatives: N}}``): per student, the training-fold
    English questions of the baseline's collection with their paragraphs in English and in the student's
    language, and each question's top ``negatives`` non-relevant training-fold paragraphs of the first
    stage (:func:`clir_ot.distill.xquad_query_bitext`); part of every such student's key."""

    negatives: int = 0

    KEYS = ("negatives",)


TEACHER_SOURCES = ("xquad", "msmarco")
MSMARCO_FILES = ("triples", "id_triples", "queries", "collection")


@dataclass(frozen=True)
class TeacherDataSettings:
    """What the study's teachers train on (``teacher_data:``); part of every trained teacher's key.

    * ``source: xquad`` (default): cross-fitted on the English XQuAD questions of the other folds,
      with the recipe's data choices ``negatives`` (``fused`` / ``dense``), ``soft_targets`` and
      ``validate_on`` (``negatives`` / ``first-stage``) -- see :class:`clir_ot.datasets.TeacherData`.
    * ``source: msmarco``: MS MARCO passage training data, streamed from disk -- ``triples`` (text
      triples ``query<TAB>positive<TAB>negative``) or ``id_triples`` with ``queries`` and ``collection``
      (MS MARCO's id triples and TSVs, or ``ir_datasets export`` output); XQuAD English is then only
      the validation data (10% of each fold's training-side questions, their dense top 10), so the
      teacher is evaluated zero-shot on XQuAD.
    """

    source: str = "xquad"
    negatives: str = "fused"
    soft_targets: bool = False
    validate_on: str = "negatives"
    triples: str | None = None
    id_triples: str | None = None
    queries: str | None = None
    collection: str | None = None

    KEYS = ("source", "negatives", "soft_targets", "validate_on", *MSMARCO_FILES)

    def key_settings(self) -> dict[str, Any]:
        """The settings that differ from the default (a default config keeps the keys it had)."""
        defaults = TeacherDataSettings()
        return {k: getattr(self, k) for k in self.KEYS if getattr(self, k) != getattr(defaults, k)}


@dataclass(frozen=True)
class SearchSettings:
    """How a dense student's search step encodes and searches (``search:``); part of its key."""

    hits: int = 100
    batch_size: int = 32
    max_length: int = 256
    dtype: str = "auto"

    KEYS = ("hits", "batch_size", "max_length", "dtype")


LOCAL_EXECUTOR, SLURM_EXECUTOR = "local", "slurm"
#: ``local``: this machine (``--jobs N`` processes); ``slurm``: one Slurm job per step through submitit;
#: ``submitit-local`` / ``submitit-debug``: the same submitit jobs as processes here / in this process
#: (to try a Slurm config without a cluster; the tests use them).
EXECUTOR_KINDS = (LOCAL_EXECUTOR, SLURM_EXECUTOR, "submitit-local", "submitit-debug")
#: the longest wait between two looks at the queue (an hour)
MAX_POLL_S = 3600.0
#: a submitit job's wall-time limit when ``timeout_min`` is not given (submitit's own defaults, 5 minutes
#: on Slurm and 2 locally, would stop every training step)
DEFAULT_TIMEOUT_MIN = 24 * 60


@dataclass(frozen=True)
class ExecutorSettings:
    """Where the study's steps run (``executor:``); never part of a key, so every executor builds the
    same artifacts. The resources are submitit's (``timeout_min``, ``cpus_per_task``, ``gpus_per_node``,
    ``mem_gb``) and Slurm's (``partition``, ``account``, ``qos``, ``additional``: other ``#SBATCH``
    options, e.g. ``{constraint: a100}``); ``max_jobs`` steps are queued at once, ``poll_s`` is how
    often the study looks at them, ``logs`` the folder of the jobs' logs (default ``<study>/submitit``)."""

    kind: str = LOCAL_EXECUTOR
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    timeout_min: int | None = None
    cpus_per_task: int | None = None
    gpus_per_node: int | None = None
    mem_gb: int | None = None
    max_jobs: int = 16
    poll_s: float = 5.0
    logs: str | None = None
    additional: Mapping[str, Any] = field(default_factory=dict)

    KEYS = ("kind", "partition", "account", "qos", "timeout_min", "cpus_per_task", "gpus_per_node", "mem_gb",
            "max_jobs", "poll_s", "logs", "additional")

    @property
    def submitit(self) -> bool:
        return self.kind != LOCAL_EXECUTOR


@dataclass(frozen=True)
class StudyConfig:
    name: str
    path: Path
    baseline: Path
    first_stage: str
    depth: int
    languages: tuple[str, ...]
    reference_language: str | None
    low_resource: tuple[str, ...]
    bitext: dict[str, Path]  # language -> bitext file or Tatoeba folder (for tatoeba: the folder)
    bitext_kind: str         # "tatoeba", "files", or "xquad" (the in-domain query bitext alone)
    seeds: tuple[int, ...]
    backbones: tuple[BackboneSpec, ...]
    methods: tuple[MethodSpec, ...]
    teacher: TrainingConfig
    teacher_data: TeacherDataSettings
    distill: dict[str, Any]
    rerank: RerankSettings
    reuse: tuple[Path, ...]
    pool: bool
    n_resamples: int
    resource_order: tuple[str, ...] | None
    measures: tuple[str, ...] = DEFAULT_MEASURES
    search: SearchSettings = SearchSettings()
    executor: ExecutorSettings = ExecutorSettings()
    xquad_bitext: XQuADBitextSettings | None = None
    controls: tuple[str, ...] = ()
    reranked_run: str = "dense"
    dataset: str = XQUAD_DATASET

    KEYS = ("name", "description", "dataset", "baseline", "first_stage", "reranked_run", "depth", "languages", "reference_language",
            "low_resource", "bitext", "controls", "seeds", "backbones", "methods", "teacher", "teacher_data", "distill",
            "rerank", "search",
            "reuse", "pool", "n_resamples", "resource_order", "measures", "executor")

    @property
    def probe(self) -> bool:
        """Whether the study is on the Tatoeba probe (``dataset: tatoeba-probe``), not XQuAD."""
        return self.dataset == PROBE_DATASET

    def methods_for(self, language: str) -> list[MethodSpec]:
        """The methods run on ``language`` (only ``none`` on the reference language)."""
        if language == self.reference_language and language not in self.languages:
            return [m for m in self.methods if m.is_baseline]
        return [m for m in self.methods if m.languages is None or language in m.languages]

    def controls_of(self, method: MethodSpec) -> dict[str, str]:
        """The controls of a distillation method in this grid: control kind -> method name
        (``shuffled``: ``<name>-shuffled``; ``no-bitext``: the ranking term alone); empty for ``none``
        and for the controls themselves."""
        if method.is_baseline or method.is_control:
            return {}
        names = {m.name: m for m in self.methods}
        out = {}
        shuffled = names.get(method.name + SHUFFLED_SUFFIX)
        if shuffled is not None and shuffled.shuffled:
            out[SHUFFLED_CONTROL] = shuffled.name
        rank_only = [m.name for m in self.methods if m.rank_only]
        if rank_only:
            out[NO_BITEXT_CONTROL] = rank_only[0]
        return out

    @property
    def evaluated_languages(self) -> tuple[str, ...]:
        extra = (self.reference_language,) if self.reference_language and self.reference_language not in self.languages else ()
        return extra + self.languages

    def distill_settings(self, method: MethodSpec, seed: int,
                         kind: str = CROSS_ENCODER) -> tuple[TrainingConfig, DistillationConfig]:
        """The training and distillation settings of ``method``'s students on a backbone of ``kind``."""
        data = {**self.distill, **dict(method.settings), "method": method.objective,
                "shuffle_bitext": method.shuffled, "seed": seed}
        if kind == BI_ENCODER:
            data["model_type"] = BI_ENCODER
        return split_settings(data, f"{self.path}: distill settings of {method.name}")


# --------------------------------------------------------------------------------------------------
# reading: one function per part of the YAML


def check_base(base: str, config_path: Path, where: str) -> str | None:
    """``None`` for the offline default; an existing folder; or a hub name (offline: only if cached)."""
    if base in DEFAULT_BASES:
        return None
    folder = _resolve(config_path, base)
    if folder.is_dir():
        return str(folder)
    if base.startswith((".", "/", "~")) or os.sep + os.sep in base or base.count("/") > 1:
        raise ConfigError(f"{where}: base {base} is not a folder (and not a hub name 'owner/model')")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        if not isinstance(try_to_load_from_cache(base, "config.json"), str):
            raise ConfigError(f"{where}: unknown backbone {base!r}: no such folder, and HF_HUB_OFFLINE=1 with no "
                              "cached copy of that hub model (download it on a networked machine first)")
    return base


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (Path.cwd() / path)


def _read_yaml(path: Path) -> Any:
    if not path.exists():
        raise InputFormatError(path, None, "no such study config")
    try:
        return yaml.safe_load(read_text(path))
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        raise InputFormatError(path, None if line is None else line + 1, f"invalid YAML ({err})") from None


def _check_top_level(data: Any, where: str) -> None:
    if data is None:
        raise ConfigError(f"{where}: the study config is empty")
    _check_keys(data, StudyConfig.KEYS, where)
    for required in ("name", "baseline", "languages", "backbones", "methods"):
        if required not in data:
            raise ConfigError(f"{where}: missing {required!r}")
    name = str(data["name"])
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ConfigError(f"{where}: name {name!r} must be letters, digits, '-', '_' or '.' (it names runs/<name>)")


def _parse_dataset(data: Mapping[str, Any], where: str) -> str:
    value = data.get("dataset", XQUAD_DATASET)
    if value not in DATASETS:
        raise ConfigError(f"{where}: dataset must be one of {', '.join(DATASETS)}, got {value!r}")
    return value


def _parse_languages(data: Mapping[str, Any], where: str,
                     dataset: str = XQUAD_DATASET) -> tuple[list[str], str | None, list[str]]:
    """The studied languages, the reference language and the low-resource group."""
    languages = _str_list(data["languages"], f"{where}: languages")
    if not languages:
        raise ConfigError(f"{where}: languages is empty: the grid has no cells")
    if dataset == PROBE_DATASET:  # any language of the Tatoeba folder, by any of its codes
        return _parse_probe_languages(data, languages, where)
    known = set(XQUAD_LANGUAGES)  # ro too: its xquad.ro.json must then be in the source
    for lang in languages:
        if lang not in known:
            raise ConfigError(f"{where}: unknown language {lang!r}; XQuAD has {', '.join(XQUAD_LANGUAGES)}")
    reference = data.get("reference_language", "en")
    if reference is not None and reference not in known:
        raise ConfigError(f"{where}: unknown reference_language {reference!r}")
    low = _str_list(data.get("low_resource", languages), f"{where}: low_resource")
    stray = [l for l in low if l not in languages]
    if stray or not low:
        raise ConfigError(f"{where}: low_resource must be a non-empty subset of languages; {stray} are not studied")
    return languages, reference, low


def _parse_probe_languages(data: Mapping[str, Any], languages: list[str],
                           where: str) -> tuple[list[str], None, list[str]]:
    """The probe's languages as canonical codes (``swh`` -> ``sw``); no reference language (English is
    the query side of every language's task)."""
    if data.get("reference_language") is not None:
        raise ConfigError(f"{where}: reference_language is for XQuAD; the probe's queries are English in every task")
    codes = [resolve_language(lang, f"{where}: languages").code for lang in languages]
    if len(set(codes)) != len(codes):
        raise ConfigError(f"{where}: languages name one language twice: {languages}")
    low = [resolve_language(lang, f"{where}: low_resource").code
           for lang in _str_list(data.get("low_resource", languages), f"{where}: low_resource")]
    stray = [l for l in low if l not in codes]
    if stray or not low:
        raise ConfigError(f"{where}: low_resource must be a non-empty subset of languages; {stray} are not studied")
    return codes, None, low


def _check_probe(config: "StudyConfig") -> None:
    """What a study on the Tatoeba probe cannot have: reranker backbones, bitext other than Tatoeba's
    distillation halves, XQuAD query bitext, a ranking term (there are no English relevance data), earlier
    XQuAD students."""
    where = str(config.path)
    rerankers = [b.name for b in config.backbones if not b.dense]
    if rerankers:
        raise ConfigError(f"{where}: dataset: {PROBE_DATASET} studies bi-encoder students; backbones "
                          f"{', '.join(rerankers)} need kind: {BI_ENCODER}")
    reused = [b.name for b in config.backbones if b.students]
    if reused:
        raise ConfigError(f"{where}: backbones {', '.join(reused)}: students: reuses XQuAD dense students; "
                          f"the probe's are distilled on its distillation halves")
    if config.xquad_bitext is not None or (config.bitext and config.bitext_kind != "tatoeba"):
        raise ConfigError(f"{where}: dataset: {PROBE_DATASET} distils on each language's Tatoeba distillation half: "
                          "give bitext: {tatoeba: DIR} (the folder the probe's baseline was made from)")
    if NO_BITEXT_CONTROL in config.controls:
        raise ConfigError(f"{where}: controls: {NO_BITEXT_CONTROL} is the ranking term alone, and the probe has no "
                          "English relevance data for one")
    if config.pool:
        raise ConfigError(f"{where}: pool: true pools the languages' runs of the same queries, but each probe "
                          "language has its own English sentences; leave pool out (false for the probe)")


def _parse_backbone(item: Any, i: int, path: Path) -> BackboneSpec:
    where = str(path)
    if isinstance(item, str):
        item = {"name": item}
    _check_keys(item, BackboneSpec.KEYS, f"{where}: backbones[{i}]")
    if "name" not in item:
        raise ConfigError(f"{where}: backbones[{i}] has no name")
    kind = item.get("kind", CROSS_ENCODER)
    if kind not in BACKBONE_KINDS:
        raise ConfigError(f"{where}: backbones[{i}].kind must be one of {', '.join(BACKBONE_KINDS)}, got {kind!r}")
    layers = item.get("layers")
    if layers is not None:
        _positive_int(layers, f"{where}: backbones[{i}].layers")
    teachers = item.get("teachers")
    if kind == BI_ENCODER and (layers is not None or teachers is not None):
        raise ConfigError(f"{where}: backbone {item['name']!r} is a bi-encoder: its students start from the encoder "
                          "of the baseline's dense run, so it takes no layers and no teachers")
    students = item.get("students")
    if students is not None and kind != BI_ENCODER:
        raise ConfigError(f"{where}: backbone {item['name']!r}: students: reuses dense students; it needs kind: bi-encoder")
    if teachers is not None and not _resolve(path, teachers).is_dir():
        raise ConfigError(f"{where}: backbone {item['name']!r}: teachers folder {teachers} does not exist "
                          "(train them with `clir-ot xquad-teacher`, or remove the entry to train them here)")
    base = item.get("base")
    if base is not None:
        base = check_base(str(base), path, f"{where}: backbone {item['name']!r}")
    return BackboneSpec(str(item["name"]), None if base is None else str(base), layers,
                        None if teachers is None else str(_resolve(path, teachers)), kind,
                        None if students is None else str(_resolve(path, students)))


def _parse_backbones(data: Mapping[str, Any], path: Path) -> list[BackboneSpec]:
    where = str(path)
    raw = data["backbones"]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: backbones must be a non-empty list (smaller to larger)")
    backbones = [_parse_backbone(item, i, path) for i, item in enumerate(raw)]
    names = [b.name for b in backbones]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: backbone names repeat: {names}")
    return backbones


def _parse_method(item: Any, i: int, languages: Sequence[str], where: str) -> MethodSpec:
    if isinstance(item, str):
        item = {"name": item}
    _check_keys(item, MethodSpec.KEYS, f"{where}: methods[{i}]")
    method_name = str(item.get("name", ""))
    if not method_name:
        raise ConfigError(f"{where}: methods[{i}] has no name")
    explicit = item.get("method")
    if explicit is not None and (method_name == BASELINE_METHOD or explicit == BASELINE_METHOD):
        raise ConfigError(f"{where}: methods[{i}]: {BASELINE_METHOD!r} is the teacher itself and has no "
                          f"variants; give a variant another name and a distillation method")
    base = str(explicit) if explicit is not None else method_name
    objective = base.removesuffix(SHUFFLED_SUFFIX)
    if base != BASELINE_METHOD and objective not in DISTILL_METHODS:
        valid = [BASELINE_METHOD, *DISTILL_METHODS] + [m + SHUFFLED_SUFFIX for m in DISTILL_METHODS]
        what = f"method {base!r} of {method_name!r}" if explicit is not None else f"method {method_name!r}"
        raise ConfigError(f"{where}: unknown {what}; valid: {', '.join(valid)}"
                          + ("" if explicit is not None else
                             " (a variant with its own name needs `method:`, e.g. {name: ot-unbalanced, "
                             "method: ot, settings: {marginal_penalty: 1.0}})"))
    subset = item.get("languages")
    if subset is not None:
        subset = tuple(_str_list(subset, f"{where}: methods[{i}].languages"))
        stray = [l for l in subset if l not in languages]
        if stray:
            raise ConfigError(f"{where}: method {method_name!r} names languages {stray} that the study does not have")
    settings = item.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise ConfigError(f"{where}: methods[{i}].settings must be a mapping")
    return MethodSpec(method_name, subset, dict(settings), None if explicit is None else base)


def _parse_methods(data: Mapping[str, Any], languages: Sequence[str], where: str) -> list[MethodSpec]:
    raw = data["methods"]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: methods must be a non-empty list, e.g. [none, ot]")
    methods = [_parse_method(item, i, languages, where) for i, item in enumerate(raw)]
    if len({m.name for m in methods}) != len(methods):
        raise ConfigError(f"{where}: methods repeat")
    if BASELINE_METHOD not in {m.name for m in methods}:
        raise ConfigError(f"{where}: methods must include {BASELINE_METHOD!r}, the zero-shot teacher every gain is measured against")
    return methods


def _parse_bitext(data: Mapping[str, Any], methods: Sequence[MethodSpec], languages: Sequence[str],
                  path: Path) -> tuple[dict[str, Path], str, XQuADBitextSettings | None]:
    """language -> bitext (a Tatoeba folder or a file), for every language a distillation method needs;
    the kind (``tatoeba``, ``files``, or ``xquad`` when the in-domain query bitext is the only source);
    and the in-domain query bitext's settings (``bitext.xquad``, ``None`` without it)."""
    where = str(path)
    distilled = [m for m in methods if not m.is_baseline]
    bitext_data = data.get("bitext") or {}
    _check_keys(bitext_data, ("tatoeba", "files", "xquad"), f"{where}: bitext")
    xquad = _parse_xquad_bitext(bitext_data, where) if "xquad" in bitext_data else None
    kind = "tatoeba" if "tatoeba" in bitext_data else "files" if "files" in bitext_data else "xquad" if xquad else "files"
    need = sorted({l for m in distilled for l in (m.languages or languages)})
    if not need:
        return {}, kind, xquad
    if "tatoeba" in bitext_data:
        return ({lang: _tatoeba_bitext(_resolve(path, bitext_data["tatoeba"]), lang, where) for lang in need}, kind,
                xquad)
    if "files" in bitext_data:
        files = bitext_data["files"]
        if not isinstance(files, Mapping):
            raise ConfigError(f"{where}: bitext.files must map languages to files")
        bitext = {}
        for lang in need:
            if lang not in files:
                raise ConfigError(f"{where}: language {lang!r} has no bitext file in bitext.files")
            file = _resolve(path, files[lang])
            if not file.is_file():
                raise ConfigError(f"{where}: bitext file for {lang!r} does not exist: {file}")
            bitext[lang] = file
        return bitext, kind, xquad
    if xquad is not None:
        return {}, kind, xquad
    raise ConfigError(f"{where}: methods {', '.join(m.name for m in distilled)} need bitext: "
                      "give bitext: {tatoeba: DIR}, bitext: {files: {lang: file}} or bitext: {xquad: {negatives: N}}")


def _parse_xquad_bitext(bitext_data: Mapping[str, Any], where: str) -> XQuADBitextSettings:
    value = bitext_data["xquad"]
    if value is None or value is True:
        value = {}
    _check_keys(value, XQuADBitextSettings.KEYS, f"{where}: bitext.xquad")
    negatives = value.get("negatives", 0)
    if isinstance(negatives, bool) or not isinstance(negatives, int) or negatives < 0:
        raise ConfigError(f"{where}: bitext.xquad.negatives must be an integer >= 0, got {negatives!r}")
    return XQuADBitextSettings(negatives=negatives)


def _parse_controls(data: Mapping[str, Any], methods: list[MethodSpec], where: str) -> tuple[tuple[str, ...], list[MethodSpec]]:
    """``controls:`` and the methods with the controls added: ``<X>-shuffled`` for every distillation
    method ``X`` (unless the list has it already) and one ``no-bitext`` method (the rank term alone)."""
    controls = tuple(_str_list(data.get("controls") or [], f"{where}: controls"))
    unknown = [c for c in controls if c not in CONTROLS]
    if unknown:
        raise ConfigError(f"{where}: controls: unknown control(s) {', '.join(unknown)}; known: {', '.join(CONTROLS)}")
    objectives = [m for m in methods if not m.is_baseline and not m.shuffled]
    if controls and not objectives:
        raise ConfigError(f"{where}: controls: {', '.join(controls)} need a distillation method in methods")
    names = {m.name for m in methods}
    out = list(methods)
    if SHUFFLED_CONTROL in controls:
        for m in objectives:
            name = m.name + SHUFFLED_SUFFIX
            if name in names:
                continue
            base = (m.method or m.name) + SHUFFLED_SUFFIX
            out.append(MethodSpec(name, m.languages, dict(m.settings), base if m.method else None,
                                  control=SHUFFLED_CONTROL))
    if NO_BITEXT_CONTROL in controls:
        if NO_BITEXT_CONTROL in names:
            raise ConfigError(f"{where}: methods: {NO_BITEXT_CONTROL!r} is the name of the control that controls: adds")
        subsets = [m.languages for m in objectives]
        languages = None if any(s is None for s in subsets) else tuple(dict.fromkeys(l for s in subsets for l in s))
        out.append(MethodSpec(NO_BITEXT_CONTROL, languages, {"distill_weight": 0.0}, control=NO_BITEXT_CONTROL))
    return controls, out


def _tatoeba_bitext(folder: Path, lang: str, where: str) -> Path:
    try:
        tatoeba_files(folder, lang)
    except (ConfigError, InputFormatError) as err:
        raise ConfigError(f"{where}: no bitext for {lang!r}: {err}") from None
    return folder


def _parse_teacher(data: Mapping[str, Any], path: Path) -> TrainingConfig:
    value = data.get("teacher", {})
    if isinstance(value, str):
        return TrainingConfig.from_json(_resolve(path, value))
    return TrainingConfig.from_dict(value or {}, f"{path}: teacher")


def _parse_seeds(data: Mapping[str, Any], where: str) -> tuple[int, ...]:
    seeds = data.get("seeds", [42])
    if isinstance(seeds, int):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"{where}: seeds must be a non-empty list of integers")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(f"{where}: seeds must differ; {', '.join(map(str, repeated))} given more than once")
    return tuple(seeds)


def _parse_settings(cls: type, value: Any, where: str):
    """A :class:`RerankSettings` / :class:`SearchSettings` from its mapping (unknown keys rejected)."""
    value = value or {}
    _check_keys(value, cls.KEYS, where)
    defaults = cls()
    out = {}
    for name in cls.KEYS:
        raw = value.get(name, getattr(defaults, name))
        if name == "dtype":
            out[name] = str(raw)
        elif name == "window_overlap":  # 0 is a valid overlap
            out[name] = _nonnegative_int(raw, f"{where}.{name}")
        else:
            out[name] = _positive_int(raw, f"{where}.{name}")
    return cls(**out)


def _parse_teacher_data(data: Mapping[str, Any], path: Path) -> TeacherDataSettings:
    """``teacher_data:``, checked before any work: an MS MARCO source names files that exist."""
    where = f"{path}: teacher_data"
    value = data.get("teacher_data") or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, found {type(value).__name__}")
    _check_keys(value, TeacherDataSettings.KEYS, where)
    settings = TeacherDataSettings(**{k: v for k, v in value.items()})
    if settings.source not in TEACHER_SOURCES:
        raise ConfigError(f"{where}: source must be one of {', '.join(TEACHER_SOURCES)}, not {settings.source!r}")
    if not isinstance(settings.soft_targets, bool):
        raise ConfigError(f"{where}: soft_targets must be true or false")
    given = {k: getattr(settings, k) for k in MSMARCO_FILES if getattr(settings, k) is not None}
    if settings.source == "xquad":
        if given:
            raise ConfigError(f"{where}: {', '.join(given)} are MS MARCO files: set source: msmarco to train on them")
        TeacherData(settings.negatives, settings.soft_targets, settings.validate_on)  # checks the choices
        return settings
    if settings.triples is None and settings.id_triples is None:
        raise ConfigError(f"{where}: source msmarco needs triples (query<TAB>positive<TAB>negative) or id_triples "
                          "with queries and collection; e.g. `ir_datasets export msmarco-passage/train/triples-small "
                          "docpairs > triples.ids.tsv`, `... docs > collection.tsv`, `... queries > queries.tsv`")
    if settings.triples is not None and settings.id_triples is not None:
        raise ConfigError(f"{where}: give triples or id_triples, not both")
    if settings.id_triples is not None and (settings.queries is None or settings.collection is None):
        raise ConfigError(f"{where}: id_triples need queries and collection too")
    resolved = {}
    for name, file in given.items():
        full = _resolve(path, str(file))
        if not full.exists():
            raise ConfigError(f"{where}: {name} {full} does not exist: download MS MARCO passage (e.g. with "
                              "ir_datasets, see docs/training-data.md) and give its path, or train the teacher "
                              "on XQuAD (source: xquad)")
        resolved[name] = str(full)
    return TeacherDataSettings(source="msmarco", **resolved)


def _parse_executor(data: Mapping[str, Any], path: Path) -> ExecutorSettings:
    """``executor:`` (default: this machine), checked by :func:`check_executor`."""
    where = f"{path}: executor"
    value = data.get("executor") or {}
    if isinstance(value, str):
        value = {"kind": value}
    _check_keys(value, ExecutorSettings.KEYS, where)
    settings = ExecutorSettings(**value)
    if settings.logs is not None:
        settings = replace(settings, logs=str(_resolve(path, str(settings.logs))))
    return check_executor(settings, where)


def check_executor(settings: ExecutorSettings, where: str) -> ExecutorSettings:
    """``settings`` if they are valid (also after ``clir-ot study --executor`` overrides), else a ConfigError."""
    if settings.kind not in EXECUTOR_KINDS:
        raise ConfigError(f"{where}: kind must be one of {', '.join(EXECUTOR_KINDS)}, got {settings.kind!r}")
    for name in ("timeout_min", "cpus_per_task", "gpus_per_node", "mem_gb", "max_jobs"):
        value = getattr(settings, name)
        if value is not None:
            _positive_int(value, f"{where}: {name}")
    if (isinstance(settings.poll_s, bool) or not isinstance(settings.poll_s, (int, float))
            or not math.isfinite(settings.poll_s) or not 0 < settings.poll_s <= MAX_POLL_S):
        raise ConfigError(f"{where}: poll_s must be a number of seconds above 0 and at most {MAX_POLL_S:g}, "
                          f"got {settings.poll_s!r}")
    for name in ("partition", "account", "qos", "logs"):
        value = getattr(settings, name)
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{where}: {name} must be a non-empty string, got {value!r}")
    if not isinstance(settings.additional, Mapping):
        raise ConfigError(f"{where}: additional must map #SBATCH options to values, got {settings.additional!r}")
    if not settings.submitit:
        given = [k for k in ExecutorSettings.KEYS[1:] if getattr(settings, k) != getattr(ExecutorSettings(), k)]
        if given:
            raise ConfigError(f"{where}: {', '.join(given)}: only the submitit executors "
                              f"({', '.join(EXECUTOR_KINDS[1:])}) take this; kind {LOCAL_EXECUTOR} runs steps "
                              "on this machine, --jobs N at once")
    return settings


def _parse_measures(data: Mapping[str, Any], where: str) -> tuple[str, ...]:
    names = _str_list(data.get("measures", list(DEFAULT_MEASURES)), f"{where}: measures")
    if not names:
        raise ConfigError(f"{where}: measures is empty")
    try:
        return tuple(parse_measure(name).display for name in names)
    except ConfigError as err:
        raise ConfigError(f"{where}: measures: {err}") from None


def load_study_config(path: str | Path) -> StudyConfig:
    """Read and check a study YAML; every problem is a :class:`ConfigError` raised before any work."""
    path = Path(path)
    return study_config_from_data(_read_yaml(path), path)


def study_config_from_data(data: Any, path: str | Path) -> StudyConfig:
    """Check the data of a study YAML (``path`` names it in messages and in the config)."""
    path = Path(path)
    where = str(path)
    _check_top_level(data, where)
    dataset = _parse_dataset(data, where)
    languages, reference, low = _parse_languages(data, where, dataset)
    backbones = _parse_backbones(data, path)
    controls, methods = _parse_controls(data, _parse_methods(data, languages, where), where)
    bitext, bitext_kind, xquad_bitext = _parse_bitext(data, methods, languages, path)
    seeds = _parse_seeds(data, where)
    depth = _positive_int(data.get("depth", 10), f"{where}: depth")
    pool = data.get("pool", dataset != PROBE_DATASET)
    if not isinstance(pool, bool):
        raise ConfigError(f"{where}: pool must be true or false, got {pool!r}")
    config = StudyConfig(
        name=str(data["name"]), path=path, baseline=_resolve(path, str(data["baseline"])),
        first_stage=str(data.get("first_stage", "e5-small")), depth=depth,
        languages=tuple(languages), reference_language=reference, low_resource=tuple(low), bitext=bitext,
        bitext_kind=bitext_kind, seeds=seeds, backbones=tuple(backbones), methods=tuple(methods),
        teacher=_parse_teacher(data, path), teacher_data=_parse_teacher_data(data, path),
        distill=dict(data.get("distill") or {}),
        rerank=_parse_settings(RerankSettings, data.get("rerank"), f"{where}: rerank"),
        search=_parse_settings(SearchSettings, data.get("search"), f"{where}: search"),
        reuse=tuple(_resolve(path, p) for p in _str_list(data.get("reuse", []), f"{where}: reuse")),
        pool=pool, n_resamples=_positive_int(data.get("n_resamples", 10000), f"{where}: n_resamples"),
        resource_order=tuple(data["resource_order"]) if data.get("resource_order") else None,
        measures=_parse_measures(data, where),
        executor=_parse_executor(data, path),
        xquad_bitext=xquad_bitext, controls=controls, reranked_run=_parse_reranked_run(data, backbones, where),
        dataset=dataset,
    )
    if config.probe:
        _check_probe(config)
    _check_controls_and_query_bitext(config)
    _check_distill_settings(config)
    return config


def _parse_reranked_run(data: Mapping[str, Any], backbones: Sequence[BackboneSpec], where: str) -> str:
    """``reranked_run``: one of :data:`~clir_ot.datasets.layout.RERANKED_RUNS`; ``bm25-qt`` only for
    cross-encoder backbones (a bi-encoder's student replaces the dense first stage, it reranks nothing)."""
    value = data.get("reranked_run", "dense")
    if value not in RERANKED_RUNS:
        raise ConfigError(f"{where}: reranked_run must be one of {', '.join(RERANKED_RUNS)}, got {value!r}")
    dense = [b.name for b in backbones if b.dense]
    if value != "dense" and dense:
        raise ConfigError(f"{where}: reranked_run: {value} is what a cross-encoder reranks; backbones "
                          f"{', '.join(dense)} are bi-encoders, whose students replace the dense first stage")
    return value


def _check_distill_settings(config: StudyConfig) -> None:
    """Every method's settings are valid, on every kind of backbone it runs on, before any work starts."""
    kinds = dict.fromkeys(b.kind for b in config.backbones)
    for method in config.methods:
        if not method.is_baseline:
            for kind in kinds:
                config.distill_settings(method, config.seeds[0], kind)


def _check_controls_and_query_bitext(config: StudyConfig) -> None:
    """The no-bitext control needs the rank term; the in-domain query bitext needs methods that read its
    questions (query mode, score-kd) and cross-encoder students (a dense student is tested on every fold)."""
    where = str(config.path)
    dense = [b.name for b in config.backbones if b.dense]
    rank_only = [m for m in config.methods if m.rank_only]
    if rank_only:
        if dense:
            raise ConfigError(f"{where}: controls: {NO_BITEXT_CONTROL} is the ranking term alone, which dense "
                              f"students do not have (backbones {', '.join(dense)} are bi-encoders)")
        rank_weight = {**config.distill, **dict(rank_only[0].settings)}.get("rank_weight", 0.0)
        if isinstance(rank_weight, bool) or not isinstance(rank_weight, (int, float)) or not rank_weight > 0:
            raise ConfigError(f"{where}: controls: {NO_BITEXT_CONTROL} trains the ranking term alone for the same "
                              "steps, so it needs distill.rank_weight > 0 (the English groups of the fold); "
                              f"rank_weight is {rank_weight!r}")
    if config.xquad_bitext is None:
        return
    if dense:
        raise ConfigError(f"{where}: bitext.xquad is for cross-encoder students; backbones {', '.join(dense)} are "
                          "bi-encoders, whose students are evaluated on every fold (another fold's paragraphs "
                          "would be their test data)")
    for method in config.methods:
        if method.is_baseline or method.rank_only:
            continue
        _, distill = config.distill_settings(method, config.seeds[0])
        if not distill.uses_queries:
            raise ConfigError(f"{where}: bitext.xquad: its pairs carry their English questions, which method "
                              f"{method.name!r} ({distill.method}, {distill.mode} mode) would ignore: set "
                              "distill.mode: query (or the method's settings: {mode: query}), or use score-kd")


def describe(config: StudyConfig) -> dict[str, Any]:
    """The config as plain data (for manifests)."""
    return json.loads(json.dumps({
        "name": config.name, "path": str(config.path), "baseline": str(config.baseline),
        "first_stage": config.first_stage, "depth": config.depth, "languages": list(config.languages),
        **({"reranked_run": config.reranked_run} if config.reranked_run != "dense" else {}),
        "reference_language": config.reference_language, "low_resource": list(config.low_resource),
        "seeds": list(config.seeds), "backbones": [asdict(b) for b in config.backbones],
        "methods": [{"name": m.name, "method": m.method, "languages": m.languages, "settings": dict(m.settings),
                     **({"control": m.control} if m.control else {})} for m in config.methods],
        **({"controls": list(config.controls)} if config.controls else {}),
        **({"bitext": {"xquad": asdict(config.xquad_bitext)}} if config.xquad_bitext else {}),
        "teacher": config.teacher.to_dict(), "distill": config.distill, "rerank": config.rerank.key_settings(),
        "search": asdict(config.search), "measures": list(config.measures),
        **({"teacher_data": config.teacher_data.key_settings()} if config.teacher_data.key_settings() else {}),
    }, default=str))
