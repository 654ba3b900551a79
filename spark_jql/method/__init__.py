"""The JQL method behind the heads: LLM judging, head training and evaluation against labels. No Spark import."""
