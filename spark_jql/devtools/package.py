"""The files a cluster job needs, from a checkout or an installed package (``spark-jql package``).

* ``spark_jql.zip``: the package for ``spark-submit --py-files`` (pure Python);
* ``spark_jql_main.py``: the launcher, calling :func:`spark_jql.cli.run_job` (raises on failure,
  so a failed stage fails the EMR step, Databricks task or Airflow job);
* ``conf/``: the recipes and ``getGpusResources.sh`` (installed with the wheel under
  ``<prefix>/share/spark_jql/conf``; :func:`conf_dir` finds them either way);
* ``spark_jql-<version>-py3-none-any.whl``: from a checkout only (``pip wheel --no-deps``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
LAUNCHER = """import sys
from spark_jql.cli import run_job
run_job(sys.argv[1:])  # raises on failure: the driver exits non-zero and the job (step, task) fails
"""


def conf_dir() -> Path:
    """The recipes folder: the checkout's ``conf/``, else the installed copy."""
    for candidate in (PACKAGE.parent / "conf", Path(sys.prefix) / "share" / "spark_jql" / "conf"):
        if (candidate / "getGpusResources.sh").is_file():
            return candidate
    raise FileNotFoundError("spark_jql's conf/ folder is neither beside the package nor under <prefix>/share/spark_jql")


def write_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(PACKAGE.rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                z.write(f, f.relative_to(PACKAGE.parent))
    return path


def build(output: str | Path, wheel: bool = True) -> dict:
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    files = {"zip": str(write_zip(out / "spark_jql.zip"))}
    (out / "spark_jql_main.py").write_text(LAUNCHER)
    files["launcher"] = str(out / "spark_jql_main.py")
    shutil.copytree(conf_dir(), out / "conf", dirs_exist_ok=True)
    files["conf"] = str(out / "conf")
    if wheel and (PACKAGE.parent / "pyproject.toml").is_file():
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                        str(PACKAGE.parent), "-w", str(out)], check=True)
        files["wheel"] = str(next(out.glob("spark_jql-*.whl")))
    return files


if __name__ == "__main__":  # submit.sh: python -m spark_jql.devtools.package OUT --no-wheel
    build(sys.argv[1], wheel="--no-wheel" not in sys.argv)
