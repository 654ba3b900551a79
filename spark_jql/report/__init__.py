"""The run report: a self-contained HTML page with plots from a run's stats/ and thresholds.json.

``data`` collects the numbers (small Spark aggregations), ``plots`` draws them,
``page`` renders and writes the page.
"""

from spark_jql.report.data import collect_report_data
from spark_jql.report.page import render_html, write_report
from spark_jql.report.plots import require_plotting

__all__ = ["collect_report_data", "render_html", "require_plotting", "write_report"]
