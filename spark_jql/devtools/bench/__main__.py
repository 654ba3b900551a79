import sys

from spark_jql.devtools.bench.cli import main

sys.exit(main())
