"""What a job stage prints for people: rows in and out, kept and dropped, where each output is, the time, and the
next command to run. The full summary stays in ``<io.output>/summary.json`` and behind ``--json``."""

from __future__ import annotations

import shlex

from spark_jql.config import JobConfig
from spark_jql.layout import OutputLayout

MAX_LANGUAGES = 12  # languages listed one per line; the rest are counted
# per_language entries: everything else in an entry is a language column
_LANGUAGE_STATS = {"documents", "kept_documents", "tokens", "kept_tokens", "token_retention"}
NEXT = {"annotate": "thresholds", "thresholds": "filter", "filter": "report", "run": "report"}


def command_line(configs: list[str], overrides: list[str], command: str) -> str:
    """``spark-jql -c a.yaml --set k=v COMMAND``, quoted for a POSIX shell."""
    parts = ["spark-jql", *[a for c in configs for a in ("-c", str(c))], *[a for o in overrides for a in ("--set", o)], command]
    return " ".join(shlex.quote(p) for p in parts)


def _pct(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "n/a"


def _annotate_lines(a: dict) -> list[str]:
    files = a.get("input_files")
    where = f" from {files} file{'s' if files != 1 else ''}" if files is not None else ""
    units = f"{a.get('units')} unit(s), {a.get('units_resumed', 0)} resumed" if a.get("units") is not None else ""
    lines = [f"annotate: read {a.get('input_rows')} rows{where}" + (f" ({units})" if units else "")
             + f"; scored {a.get('scored_rows')} ({a.get('rows_without_text', 0)} without text) in {a.get('seconds')} s"
             + (f", {a['docs_per_second']} docs/s" if a.get("docs_per_second") else "")]
    skipped = (a.get("skipped_files") or []), a.get("skipped_records") or 0
    if skipped[0] or skipped[1]:
        lines.append(f"  skipped {len(skipped[0])} unreadable file(s) and {skipped[1]} bad record(s) (io.on_bad_file=skip)")
    return lines


def _thresholds_lines(t: dict, config: JobConfig) -> list[str]:
    globals_ = ", ".join(f"q{q} = {v:.4g}" if isinstance(v, (int, float)) else f"q{q} = {v}"
                         for q, v in (t.get("global_thresholds") or {}).items())
    fallback = t.get("fallback_languages", 0)
    note = (f"; {fallback} with fewer than thresholds.min_docs={config.thresholds.min_docs} documents use the global "
            "threshold" if fallback else "")
    return [f"thresholds: {t.get('documents')} documents, {t.get('languages')} language(s){note}",
            f"  global thresholds: {globals_}"]


def language_name(entry: dict) -> str:
    return "/".join(str(v) for k, v in entry.items() if k not in _LANGUAGE_STATS)


def _filter_lines(f: dict) -> list[str]:
    scored, kept, dropped = f.get("scored_rows", 0), f.get("kept_rows", 0), f.get("dropped_rows", 0)
    reasons = ", ".join(f"{r}: {n}" for r, n in sorted((f.get("dropped_by_reason") or {}).items()))
    lines = [f"filter (quantile {f.get('quantile')}): kept {kept} of {scored} ({_pct(kept, scored)}), dropped {dropped}"
             + (f" ({reasons})" if reasons else "")]
    per_language = f.get("per_language") or []
    if per_language:
        names = [language_name(e) for e in per_language]
        width = max(8, *(len(n) for n in names))
        lines.append(f"  {'language':<{width}} {'docs':>9} {'kept':>9} {'kept %':>7}")
        for name, e in list(zip(names, per_language))[:MAX_LANGUAGES]:
            lines.append(f"  {name:<{width}} {e['documents']:>9} {e['kept_documents']:>9} "
                         f"{_pct(e['kept_documents'], e['documents']):>7}")
        if len(per_language) > MAX_LANGUAGES:
            lines.append(f"  ... {len(per_language) - MAX_LANGUAGES} more language(s) in summary.json")
    if f.get("rows_with_unknown_language"):
        lines.append(f"  {f['rows_with_unknown_language']} rows of unknown language were judged by the global threshold")
    return lines


def _outputs(stage: str, config: JobConfig, summary: dict) -> list[tuple[str, str]]:
    paths = OutputLayout(config.io.output).job_paths()
    tables = config.io.output_tables
    written = []
    if stage in ("annotate", "run"):
        written += [("scored", paths["scored"]), ("stats", paths["stats"])]
        if tables.scored:
            written.append(("scored table", tables.scored))
    if stage in ("thresholds", "run"):
        written.append(("thresholds", (summary.get("thresholds") or {}).get("file") or paths["thresholds"]))
    if stage in ("filter", "run"):
        written.append(("filtered", tables.filtered or paths["filtered"]))
        if config.filter.write_dropped:
            written.append(("dropped", tables.dropped or paths["dropped"]))
    written.append(("summary", paths["summary"] + " (the full summary; --json prints it)"))
    return written


def job_summary(stage: str, summary: dict, config: JobConfig, configs: list[str], overrides: list[str],
                seconds: float) -> str:
    """The human summary of ``stage`` (annotate, thresholds, filter or run) from the job's summary dict."""
    lines: list[str] = []
    if stage in ("annotate", "run") and "annotate" in summary:
        lines += _annotate_lines(summary["annotate"])
    if stage in ("thresholds", "run") and "thresholds" in summary:
        lines += _thresholds_lines(summary["thresholds"], config)
    if stage in ("filter", "run") and "filter" in summary:
        lines += _filter_lines(summary["filter"])
    outputs = _outputs(stage, config, summary)
    width = max(len(name) for name, _ in outputs)
    lines.append("outputs:")
    lines += [f"  {name:<{width}}  {where}" for name, where in outputs]
    lines.append(f"done in {seconds:.1f} s")
    lines.append(f"next: {command_line(configs, overrides, NEXT[stage])}")
    return "\n".join(lines)
