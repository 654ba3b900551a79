"""Tools for trying and measuring spark_jql: tiny offline models, sample data, the demo and the benchmark."""
