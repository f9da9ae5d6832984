"""What ``MiniMaxBatchOperator`` does apart from the Airflow glue.

``rows`` (one result per row and the manifest), ``io`` (reading input, writing JSONL),
``progress`` (the progress log line), ``checkpoint`` (finished chat rows kept across tries) and
``chat`` (the concurrent, rate-controlled chat runner).
"""
