"""The run report: a self-contained HTML page with plots from a run's stats/ and thresholds.json.

``data`` collects the numbers (small Spark aggregations), ``plots`` draws them,
``page`` renders and writes the page.
"""

from spark_jql.report.data import collect_report_data
from spark_jql.report.page import render_html, write_report

__all__ = ["collect_report_data", "render_html", "write_report"]
