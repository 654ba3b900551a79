import sys

from spark_jql.cli import main

sys.exit(main())
