"""cluster-sim only: pyspark's worker daemon, with torch, transformers and the scorer imported before it forks.

Each of the SLOTS Python workers would otherwise import them itself, and on a 2-core machine sixteen
such imports take minutes (before any timing starts, but they make the bench slow). Forking after
these imports is what torch's DataLoader workers do too. Chosen by ``spark.python.daemon.module``
in the bench's session only; the job never uses it.
"""

import pyspark.daemon
from transformers import AutoModel, AutoTokenizer  # noqa: F401

import spark_jql.scoring.scorer  # noqa: F401  (torch)
import spark_jql.spark.udf  # noqa: F401  (pandas, pyarrow)

if __name__ == "__main__":
    pyspark.daemon.manager()
